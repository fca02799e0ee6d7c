//! The message record of a segment file: encoded on the persistent publish path straight into
//! the queue's write buffer, decoded at recovery and when a paged-out body is read back.
//!
//! Layout, big-endian; `len` counts the bytes after itself, the crc covers everything after
//! the crc field:
//! `[u32 len][u32 crc32][u64 id][u8 exchange len][exchange][u8 routing key len][routing key]`
//! `[u32 properties len][properties][u32 body len][body]`

use super::MessageRef;
use std::io;

/// Bytes before the checksummed part: the len field and the crc field.
pub(crate) const HEADER: usize = 8;

/// The smallest possible `len`: crc, id and the four length fields, every string empty.
pub(crate) const MIN_LEN: u32 = 4 + 8 + 1 + 1 + 4 + 4;

/// A decoded record, borrowing from the bytes it was decoded from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    pub id: u64,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

/// Why the bytes at some offset are not an intact record, and what recovery can do about it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The length cannot be trusted (or the file ends inside the record): nothing after this
    /// offset can be located, so the segment ends here.
    End(String),
    /// The length is plausible but the contents are damaged: skip this many bytes and go on.
    Skip(usize, String),
}

/// Appends the record of `message` to `buf` and returns its total length (len field included).
/// The crc is computed over the bytes already in the buffer, so nothing is allocated beyond the
/// buffer's own growth. On error (a field too long for its length prefix) `buf` is untouched.
pub(crate) fn encode(buf: &mut Vec<u8>, id: u64, message: MessageRef<'_>) -> io::Result<u32> {
    let total = encode_head(buf, id, message)?;
    buf.extend_from_slice(message.body);
    Ok(total)
}

/// Appends the record of `message` to `buf` without its body, which is to be written right
/// after it (a large body is written from where it is rather than copied into the buffer);
/// the crc covers the body all the same. Returns the record's total length, body included.
/// On error `buf` is untouched.
pub(crate) fn encode_head(buf: &mut Vec<u8>, id: u64, message: MessageRef<'_>) -> io::Result<u32> {
    let exchange = u8::try_from(message.exchange.len())
        .map_err(|_| invalid("exchange name longer than 255 bytes"))?;
    let routing_key = u8::try_from(message.routing_key.len())
        .map_err(|_| invalid("routing key longer than 255 bytes"))?;
    let properties = u32::try_from(message.properties.len())
        .map_err(|_| invalid("message properties of 4 GiB or more"))?;
    let body =
        u32::try_from(message.body.len()).map_err(|_| invalid("message body of 4 GiB or more"))?;
    let len = u64::from(MIN_LEN)
        + u64::from(exchange)
        + u64::from(routing_key)
        + u64::from(properties)
        + u64::from(body);
    // The whole record, len field included, must fit a u32 (`Location::len`).
    let total = u32::try_from(4 + len).map_err(|_| invalid("message record of 4 GiB or more"))?;
    let len = total - 4;

    buf.reserve(total as usize - message.body.len());
    let start = buf.len();
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&[0; 4]); // the crc, filled in below
    buf.extend_from_slice(&id.to_be_bytes());
    buf.push(exchange);
    buf.extend_from_slice(message.exchange.as_bytes());
    buf.push(routing_key);
    buf.extend_from_slice(message.routing_key.as_bytes());
    buf.extend_from_slice(&properties.to_be_bytes());
    buf.extend_from_slice(message.properties);
    buf.extend_from_slice(&body.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[start + HEADER..]);
    crc.update(message.body);
    buf[start + 4..start + HEADER].copy_from_slice(&crc.finalize().to_be_bytes());
    Ok(total)
}

/// Decodes the record at the start of `data`, which runs to the end of what is readable (the
/// rest of the file at recovery). Returns the record and its total length.
pub(crate) fn parse(data: &[u8]) -> Result<(RecordRef<'_>, usize), Damage> {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return Err(Damage::End(format!(
            "torn record: {} bytes where a record header starts",
            data.len()
        )));
    };
    let len = u32::from_be_bytes(*len);
    if len < MIN_LEN {
        return Err(Damage::End(format!("implausible record length {len}")));
    }
    let total = 4 + len as usize;
    if total > data.len() {
        return Err(Damage::End(format!(
            "truncated record: its length says {total} bytes, {} are left",
            data.len()
        )));
    }
    let Some((crc, payload)) = rest[..len as usize].split_first_chunk::<4>() else {
        // Unreachable: len >= MIN_LEN > 4; kept as damage rather than a panic.
        return Err(Damage::End(format!("implausible record length {len}")));
    };
    if crc32fast::hash(payload) != u32::from_be_bytes(*crc) {
        return Err(Damage::Skip(total, "checksum mismatch".to_string()));
    }
    match fields(payload) {
        Some(record) => Ok((record, total)),
        // The checksum matched, so these are the bytes that were written; a writer bug, not
        // disk damage, but the record is unusable all the same.
        None => Err(Damage::Skip(total, "malformed record".to_string())),
    }
}

/// Splits the checksummed part of a record into its fields; `None` if the lengths inside do
/// not add up to exactly the record.
fn fields(payload: &[u8]) -> Option<RecordRef<'_>> {
    let mut cursor = Cursor(payload);
    let id = u64::from_be_bytes(*cursor.array::<8>()?);
    let exchange_len = cursor.array::<1>()?[0];
    let exchange = std::str::from_utf8(cursor.take(exchange_len.into())?).ok()?;
    let routing_key_len = cursor.array::<1>()?[0];
    let routing_key = std::str::from_utf8(cursor.take(routing_key_len.into())?).ok()?;
    let properties_len = u32::from_be_bytes(*cursor.array::<4>()?);
    let properties = cursor.take(properties_len as usize)?;
    let body_len = u32::from_be_bytes(*cursor.array::<4>()?);
    let body = cursor.take(body_len as usize)?;
    if !cursor.0.is_empty() {
        return None;
    }
    Some(RecordRef {
        id,
        exchange,
        routing_key,
        properties,
        body,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<&'a [u8; N]> {
        let (head, tail) = self.0.split_first_chunk::<N>()?;
        self.0 = tail;
        Some(head)
    }
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredMessage;
    use bytes::Bytes;

    fn message(body: Vec<u8>) -> StoredMessage {
        StoredMessage {
            exchange: "amq.direct".into(),
            routing_key: "orders.eu".into(),
            properties: Bytes::from_static(&[0x80, 0x00, 0x02]),
            body: Bytes::from(body),
        }
    }

    #[test]
    fn a_head_followed_by_its_body_is_the_whole_record() {
        let m = message(b"a body written on its own".to_vec());
        let mut whole = Vec::new();
        let total = encode(&mut whole, 5, m.as_ref()).unwrap();
        let mut head = vec![7];
        assert_eq!(encode_head(&mut head, 5, m.as_ref()).unwrap(), total);
        head.extend_from_slice(&m.body);
        assert_eq!(&head[1..], &whole[..]);
    }

    fn round_trip(m: &StoredMessage) {
        let mut buf = vec![0xAA; 3]; // records are appended after whatever is buffered
        let total = encode(&mut buf, 42, m.as_ref()).unwrap() as usize;
        assert_eq!(buf.len(), 3 + total);
        let (record, len) = parse(&buf[3..]).unwrap();
        assert_eq!(len, total);
        assert_eq!(record.id, 42);
        assert_eq!(record.exchange, m.exchange);
        assert_eq!(record.routing_key, m.routing_key);
        assert_eq!(record.properties, &m.properties[..]);
        assert_eq!(record.body, &m.body[..]);
    }

    #[test]
    fn record_round_trips() {
        round_trip(&message(b"hello".to_vec()));
    }

    #[test]
    fn record_with_empty_body_and_strings_round_trips() {
        round_trip(&StoredMessage {
            exchange: String::new(),
            routing_key: String::new(),
            properties: Bytes::new(),
            body: Bytes::new(),
        });
        let mut buf = Vec::new();
        assert_eq!(
            encode(&mut buf, 1, message(Vec::new()).as_ref()).unwrap(),
            4 + MIN_LEN + 10 + 9 + 3
        );
    }

    #[test]
    fn record_with_16_mib_body_round_trips() {
        let body: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        round_trip(&message(body));
    }

    #[test]
    fn record_layout_is_big_endian_with_crc_over_the_rest() {
        let mut buf = Vec::new();
        let m = StoredMessage {
            exchange: "x".into(),
            routing_key: "k".into(),
            properties: Bytes::from_static(b"p"),
            body: Bytes::from_static(b"b"),
        };
        encode(&mut buf, 7, m.as_ref()).unwrap();
        let mut expected_rest = Vec::new();
        expected_rest.extend_from_slice(&7u64.to_be_bytes());
        expected_rest.extend_from_slice(&[1, b'x', 1, b'k', 0, 0, 0, 1, b'p', 0, 0, 0, 1, b'b']);
        assert_eq!(&buf[..4], &(4 + expected_rest.len() as u32).to_be_bytes());
        assert_eq!(&buf[4..8], &crc32fast::hash(&expected_rest).to_be_bytes());
        assert_eq!(&buf[8..], &expected_rest[..]);
    }

    #[test]
    fn overlong_exchange_is_rejected_and_buffer_untouched() {
        let mut buf = vec![1, 2, 3];
        let mut m = message(Vec::new());
        m.exchange = "e".repeat(256);
        assert!(encode(&mut buf, 1, m.as_ref()).is_err());
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn damage_is_classified() {
        let mut buf = Vec::new();
        let total = encode(&mut buf, 9, message(b"body".to_vec()).as_ref()).unwrap() as usize;

        // A flipped body byte: the length still holds, so only this record is skipped.
        let mut flipped = buf.clone();
        flipped[total - 1] ^= 0x01;
        assert!(matches!(parse(&flipped), Err(Damage::Skip(n, _)) if n == total));

        // Cut mid-record or mid-header: the segment ends here.
        assert!(matches!(parse(&buf[..total - 1]), Err(Damage::End(_))));
        assert!(matches!(parse(&buf[..3]), Err(Damage::End(_))));
        // Zeros, as a crash can leave past the last write: implausible length.
        assert!(matches!(parse(&[0; 64]), Err(Damage::End(_))));
    }
}
