//! When inbound data reached the load generator's socket, as opposed to when the load
//! generator got round to reading it.
//!
//! On an idle machine the generator's own thread is asleep when a delivery comes in, and
//! waking it (on a virtual machine, waking its virtual CPU) takes tens of microseconds: time
//! the broker had nothing to do with, added alike to every broker measured. On Linux the
//! kernel stamps each segment as it is queued on the socket (`SO_TIMESTAMPNS`); a read
//! returns the stamp of the newest segment it took, and how long that segment waited is the
//! wall clock now minus the stamp. Elsewhere, or if the kernel gives no stamp, the wait is
//! unknown and counted as zero (arrival = read). The kernel starts stamping a moment after
//! the first socket on the machine asks for it, so the first segments of a run may carry no
//! stamp; those count from the read, which can only overstate a latency.

use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

/// What one read brought.
pub struct Read {
    pub bytes: usize,
    /// How long the newest of those bytes had been waiting in the socket, where known.
    pub waited: Option<Duration>,
}

/// Asks the kernel to timestamp what arrives on `stream`. Returns whether it will.
#[cfg(target_os = "linux")]
pub fn enable(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives across the call, and its size is given.
    let status = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    status == 0
}

#[cfg(not(target_os = "linux"))]
pub fn enable(_stream: &TcpStream) -> bool {
    false
}

/// Reads what `stream` holds into the spare capacity of `buf` (which must have some), without
/// waiting: `WouldBlock` when nothing is there.
#[cfg(target_os = "linux")]
pub fn try_read(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Read> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let (bytes, stamp) = stream.try_io(tokio::io::Interest::READABLE, || {
        let spare = buf.spare_capacity_mut();
        let mut iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        // Room for the one control message asked for (a timespec), aligned for cmsghdr.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data, valid all zeroes; every pointer put in it (the iovec,
        // the spare capacity it points to, the control buffer) outlives the recvmsg call, and
        // the lengths given are those of the buffers.
        let (n, msg) = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            (libc::recvmsg(fd, &mut msg, 0), msg)
        };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        let mut stamp = None;
        // SAFETY: the control messages are walked with the libc macros over the buffer the
        // kernel filled (msg_controllen was updated by recvmsg); a timestamp's data is a
        // timespec, read unaligned.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    stamp = Some(std::ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::timespec>(),
                    ));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n, stamp))
    })?;
    // SAFETY: recvmsg initialised the first `bytes` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + bytes) };
    let waited = stamp.and_then(|t| {
        let at = std::time::UNIX_EPOCH
            + Duration::new(
                u64::try_from(t.tv_sec).ok()?,
                u32::try_from(t.tv_nsec).ok()?,
            );
        // A stamp "in the future" (the wall clock stepped back) says nothing: unknown.
        std::time::SystemTime::now().duration_since(at).ok()
    });
    Ok(Read { bytes, waited })
}

#[cfg(not(target_os = "linux"))]
pub fn try_read(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<Read> {
    let bytes = stream.try_read_buf(buf)?;
    Ok(Read {
        bytes,
        waited: None,
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_reports_how_long_the_data_waited_in_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (client, (server, _)) = (client.unwrap(), accepted.unwrap());
        assert!(enable(&client));
        // The kernel switches timestamping on for the whole system a moment after the first
        // socket asks (deferred work): what arrives before then carries no stamp.
        let mut buf = Vec::with_capacity(64);
        for _ in 0..1000 {
            server.try_write(b".").unwrap();
            client.readable().await.unwrap();
            buf.clear();
            if try_read(&client, &mut buf).unwrap().waited.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        buf.clear();

        server.try_write(b"first").unwrap();
        let pause = Duration::from_millis(20);
        std::thread::sleep(pause);
        client.readable().await.unwrap();
        let read = try_read(&client, &mut buf).unwrap();
        assert_eq!(&buf[..], b"first");
        assert_eq!(read.bytes, 5);
        let waited = read.waited.expect("a kernel receive timestamp");
        assert!(waited >= pause, "{waited:?}");

        // Appends after what the buffer holds; nothing waiting is WouldBlock.
        server.try_write(b"second").unwrap();
        client.readable().await.unwrap();
        let read = try_read(&client, &mut buf).unwrap();
        assert_eq!((read.bytes, &buf[..]), (6, &b"firstsecond"[..]));
        let nothing = try_read(&client, &mut buf).err().map(|e| e.kind());
        assert_eq!(nothing, Some(io::ErrorKind::WouldBlock));
    }
}
