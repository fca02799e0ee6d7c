//! RabbitMQ's salted password hashes, as its internal authentication backend stores them
//! and definitions files carry them: `base64(salt ‖ H(salt ‖ utf8(password)))` with a
//! 4-byte random salt and H one of SHA-256 (the default), SHA-512 or MD5.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

/// Length of the salt that prefixes every hash, in bytes (RabbitMQ's `generate_salt/0`
/// makes a 32-bit salt).
pub const SALT_LEN: usize = 4;

/// A password hashing module of RabbitMQ's internal backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashingAlgorithm {
    /// `rabbit_password_hashing_sha256`, RabbitMQ's default since 3.6.
    #[default]
    Sha256,
    /// `rabbit_password_hashing_sha512`.
    Sha512,
    /// `rabbit_password_hashing_md5`, used before 3.6 and kept for old files.
    Md5,
}

impl HashingAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [HashingAlgorithm; 3] = [
        HashingAlgorithm::Sha256,
        HashingAlgorithm::Sha512,
        HashingAlgorithm::Md5,
    ];

    /// The module name RabbitMQ writes in `hashing_algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            HashingAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashingAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashingAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    /// The algorithm whose module name is `name`.
    pub fn from_name(name: &str) -> Option<HashingAlgorithm> {
        HashingAlgorithm::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }

    /// Length of the digest in bytes (a decoded hash is [`SALT_LEN`] more).
    pub fn digest_len(self) -> usize {
        match self {
            HashingAlgorithm::Sha256 => 32,
            HashingAlgorithm::Sha512 => 64,
            HashingAlgorithm::Md5 => 16,
        }
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut hasher = D::new();
            hasher.update(salt);
            hasher.update(password);
            hasher.finalize().to_vec()
        }
        match self {
            HashingAlgorithm::Sha256 => run::<Sha256>(salt, password),
            HashingAlgorithm::Sha512 => run::<Sha512>(salt, password),
            HashingAlgorithm::Md5 => run::<Md5>(salt, password),
        }
    }
}

impl fmt::Display for HashingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashingAlgorithm {
    type Err = UnknownHashingAlgorithm;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        HashingAlgorithm::from_name(name).ok_or_else(|| UnknownHashingAlgorithm(name.to_owned()))
    }
}

/// A `hashing_algorithm` that is not one of [`HashingAlgorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownHashingAlgorithm(pub String);

impl fmt::Display for UnknownHashingAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown password hashing algorithm '{}'", self.0)
    }
}

impl std::error::Error for UnknownHashingAlgorithm {}

/// The operating system could not provide random bytes for a salt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaltError(getrandom::Error);

impl fmt::Display for SaltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "could not get random bytes for a password salt: {}",
            self.0
        )
    }
}

impl std::error::Error for SaltError {}

/// Why a `password_hash` cannot be used with an algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHashError {
    /// Not standard, padded base64.
    NotBase64,
    /// Decodes to the wrong number of bytes for the algorithm.
    WrongLength {
        /// [`SALT_LEN`] + the algorithm's digest length.
        expected: usize,
        /// What the base64 decoded to.
        actual: usize,
    },
}

impl fmt::Display for PasswordHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHashError::NotBase64 => f.write_str("password hash is not valid base64"),
            PasswordHashError::WrongLength { expected, actual } => write!(
                f,
                "password hash decodes to {actual} bytes, expected {expected} \
                 (4-byte salt followed by the digest)"
            ),
        }
    }
}

impl std::error::Error for PasswordHashError {}

/// A decoded `password_hash`: the salt and the digest of salt ‖ password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedHash {
    /// The salt.
    pub salt: [u8; SALT_LEN],
    /// The digest, [`HashingAlgorithm::digest_len`] bytes.
    pub digest: Vec<u8>,
}

/// Hashes `password` with a fresh random salt, as `rabbitmqctl add_user` does.
pub fn hash_password(algorithm: HashingAlgorithm, password: &str) -> Result<String, SaltError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(SaltError)?;
    Ok(hash_password_with_salt(algorithm, salt, password))
}

/// Hashes `password` with the given salt: base64 of salt ‖ H(salt ‖ utf8(password)).
pub fn hash_password_with_salt(
    algorithm: HashingAlgorithm,
    salt: [u8; SALT_LEN],
    password: &str,
) -> String {
    let mut bytes = salt.to_vec();
    bytes.extend(algorithm.digest(&salt, password.as_bytes()));
    BASE64.encode(bytes)
}

/// Splits a `password_hash` into salt and digest, checking it is base64 of the right
/// length for `algorithm`.
pub fn decode_password_hash(
    algorithm: HashingAlgorithm,
    password_hash: &str,
) -> Result<DecodedHash, PasswordHashError> {
    let bytes = BASE64
        .decode(password_hash)
        .map_err(|_| PasswordHashError::NotBase64)?;
    let expected = SALT_LEN + algorithm.digest_len();
    if bytes.len() != expected {
        return Err(PasswordHashError::WrongLength {
            expected,
            actual: bytes.len(),
        });
    }
    let (salt, digest) = bytes.split_at(SALT_LEN);
    let mut salt_array = [0u8; SALT_LEN];
    salt_array.copy_from_slice(salt);
    Ok(DecodedHash {
        salt: salt_array,
        digest: digest.to_vec(),
    })
}

/// Whether `password` matches `password_hash`. A malformed hash (including the empty hash
/// of a passwordless user) matches nothing.
///
/// The digests are compared in constant time, so the time taken does not reveal how many
/// leading bytes of a guess were right.
///
/// rabbitmq-compat: RabbitMQ's internal backend also refuses every blank password before
/// hashing; that is the caller's policy to apply, not this function's.
pub fn verify_password(algorithm: HashingAlgorithm, password_hash: &str, password: &str) -> bool {
    match decode_password_hash(algorithm, password_hash) {
        Ok(decoded) => {
            let computed = algorithm.digest(&decoded.salt, password.as_bytes());
            constant_time_eq(&computed, &decoded.digest)
        }
        Err(_) => false,
    }
}

/// Compares two byte strings without an early exit. Lengths are not secret here (they are
/// fixed per algorithm), so a length mismatch may return at once.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into a short-circuit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RabbitMQ's "Credentials and Passwords" guide, section
    /// "Computing Password Hashes": salt `908D C60A`, password `test12`, SHA-256.
    #[test]
    fn rabbitmq_docs_sha256_vector() {
        let salt = [0x90, 0x8D, 0xC6, 0x0A];
        let expected = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
        let hash = hash_password_with_salt(HashingAlgorithm::Sha256, salt, "test12");
        assert_eq!(hash, expected);
        assert!(verify_password(
            HashingAlgorithm::Sha256,
            expected,
            "test12"
        ));
        assert!(!verify_password(
            HashingAlgorithm::Sha256,
            expected,
            "test13"
        ));
        let decoded = decode_password_hash(HashingAlgorithm::Sha256, expected).unwrap();
        assert_eq!(decoded.salt, salt);
        // The intermediate digest the guide prints: A5B9 24B3 … 15D8 F391.
        assert_eq!(&decoded.digest[..4], &[0xA5, 0xB9, 0x24, 0xB3]);
        assert_eq!(&decoded.digest[28..], &[0x15, 0xD8, 0xF3, 0x91]);
    }

    /// The MD5 worked example RabbitMQ's Simon MacMullen posted to rabbitmq-discuss
    /// (May 2011, "Password Hashing"): salt `CA D5 08 9B`, password `simon`.
    #[test]
    fn rabbitmq_discuss_md5_vector() {
        let hash =
            hash_password_with_salt(HashingAlgorithm::Md5, [0xCA, 0xD5, 0x08, 0x9B], "simon");
        assert_eq!(hash, "ytUIm8s3AnKsXQjptplKFytfVxI=");
    }

    /// RabbitMQ documents no SHA-512 example; this value was computed independently with
    /// Python's hashlib for the docs' salt and password.
    #[test]
    fn sha512_with_the_docs_salt() {
        let hash =
            hash_password_with_salt(HashingAlgorithm::Sha512, [0x90, 0x8D, 0xC6, 0x0A], "test12");
        assert_eq!(
            hash,
            "kI3GChuNuIYf8lRbCCxZjgjKwsY19ns6+uFO0zcXRBGA/XGJPYD8OWMy7EB8TaOmAzjP2azv84GbINYwX2cDWb4DHnc="
        );
    }

    #[test]
    fn names_round_trip() {
        for algorithm in HashingAlgorithm::ALL {
            assert_eq!(
                HashingAlgorithm::from_name(algorithm.name()),
                Some(algorithm)
            );
            assert_eq!(
                algorithm.to_string().parse::<HashingAlgorithm>(),
                Ok(algorithm)
            );
        }
        assert_eq!(
            HashingAlgorithm::from_name("rabbit_password_hashing_sha1"),
            None
        );
        assert_eq!(HashingAlgorithm::default(), HashingAlgorithm::Sha256);
    }

    #[test]
    fn random_salts_round_trip_for_every_algorithm() {
        for algorithm in HashingAlgorithm::ALL {
            let first = hash_password(algorithm, "s3cret ünïcode").unwrap();
            let second = hash_password(algorithm, "s3cret ünïcode").unwrap();
            assert!(verify_password(algorithm, &first, "s3cret ünïcode"));
            assert!(verify_password(algorithm, &second, "s3cret ünïcode"));
            assert!(!verify_password(algorithm, &first, "s3cret unicode"));
            assert!(!verify_password(algorithm, &first, ""));
            let decoded = decode_password_hash(algorithm, &first).unwrap();
            assert_eq!(decoded.digest.len(), algorithm.digest_len());
            // Two random 32-bit salts collide with probability 2^-32.
            assert_ne!(first, second);
        }
    }

    #[test]
    fn hash_of_one_algorithm_does_not_verify_under_another() {
        let sha256 = hash_password_with_salt(HashingAlgorithm::Sha256, [1, 2, 3, 4], "pw");
        assert!(!verify_password(HashingAlgorithm::Sha512, &sha256, "pw"));
        assert!(!verify_password(HashingAlgorithm::Md5, &sha256, "pw"));
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        let algorithm = HashingAlgorithm::Sha256;
        for bad in [
            "",
            "not base64!",
            "kI3GCqW5",
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2PO",
        ] {
            assert!(!verify_password(algorithm, bad, "test12"), "{bad:?}");
        }
        assert_eq!(
            decode_password_hash(algorithm, "not base64!"),
            Err(PasswordHashError::NotBase64)
        );
        assert_eq!(
            decode_password_hash(algorithm, "ytUIm8s3AnKsXQjptplKFytfVxI="),
            Err(PasswordHashError::WrongLength {
                expected: 36,
                actual: 20
            })
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
