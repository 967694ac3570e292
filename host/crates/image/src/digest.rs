//! Content digests (`sha256:<hex>`) and the readers/writers that compute or
//! check them while data streams through, so no blob is ever read twice.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<64 lowercase hex>` digest. Other algorithms are
/// refused at parse time: nothing in the image ecosystem caulk targets uses
/// them, and accepting one we cannot verify would defeat verification.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidDigest { input: input.to_owned(), reason: reason.to_owned() };
        let (algorithm, hex) = input.split_once(':').ok_or_else(|| bad("expected ALGORITHM:HEX"))?;
        if algorithm != "sha256" {
            return Err(bad("only sha256 digests are supported"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("expected 64 lowercase hexadecimal digits"));
        }
        Ok(Digest(input.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The hexadecimal part, as used for blob file names.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl TryFrom<String> for Digest {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl From<&oci_spec::image::Digest> for Digest {
    fn from(d: &oci_spec::image::Digest) -> Self {
        // oci-spec validated the syntax; only the algorithm can differ, and a
        // non-sha256 digest then fails the first comparison with real content.
        Digest(d.to_string())
    }
}

impl TryFrom<&Digest> for oci_spec::image::Digest {
    type Error = Error;
    fn try_from(d: &Digest) -> Result<Self> {
        oci_spec::image::Digest::from_str(d.as_str())
            .map_err(|e| Error::InvalidDigest { input: d.to_string(), reason: e.to_string() })
    }
}

/// Incremental sha256 with a byte count.
#[derive(Clone, Default)]
pub struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.inner)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Hasher::new() }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Hasher::new() }
    }
    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that yields a blob's bytes and fails, instead of reporting end
/// of file, when the content turns out not to match the descriptor: too long
/// (as soon as it passes the declared size), too short, or another digest.
/// A consumer that only commits output after a clean EOF therefore never
/// commits unverified data.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: Option<u64>,
    origin: String,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: Option<u64>, origin: impl Into<String>) -> Self {
        Self { inner, hasher: Some(Hasher::new()), expected, expected_size, origin: origin.into() }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        hasher.update(&buf[..n]);
        if let Some(expected) = self.expected_size
            && hasher.len() > expected
        {
            return Err(Error::SizeMismatch {
                origin: self.origin.clone(),
                digest: self.expected.clone(),
                expected,
                actual: hasher.len(),
            }
            .into_io());
        }
        if n == 0 {
            let hasher = self.hasher.take().expect("checked above");
            let len = hasher.len();
            if let Some(expected) = self.expected_size
                && len != expected
            {
                return Err(Error::SizeMismatch {
                    origin: self.origin.clone(),
                    digest: self.expected.clone(),
                    expected,
                    actual: len,
                }
                .into_io());
            }
            let actual = hasher.finish();
            if actual != self.expected {
                return Err(Error::DigestMismatch {
                    origin: self.origin.clone(),
                    expected: self.expected.clone(),
                    actual,
                }
                .into_io());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_sha256_only() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(Digest::parse(empty).unwrap(), Digest::of(b""));
        assert!(Digest::parse("sha512:abcd").is_err());
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::parse(&empty.to_uppercase()).is_err());
        assert!(Digest::parse("e3b0c442").is_err());
    }

    #[test]
    fn verifying_reader_rejects_short_long_and_wrong() {
        let data = b"hello world";
        let good = Digest::of(data);
        let read_all = |bytes: &[u8], size| {
            let mut out = Vec::new();
            VerifyingReader::new(bytes, good.clone(), size, "test").read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read_all(data, Some(11)).unwrap(), data);
        let short = Error::io("x", read_all(&data[..5], Some(11)).unwrap_err());
        assert!(matches!(short, Error::SizeMismatch { actual: 5, .. }), "{short}");
        let long = Error::io("x", read_all(b"hello world!!", Some(11)).unwrap_err());
        assert!(matches!(long, Error::SizeMismatch { .. }), "{long}");
        let wrong = Error::io("x", read_all(b"hello worle", Some(11)).unwrap_err());
        assert!(matches!(wrong, Error::DigestMismatch { .. }), "{wrong}");
    }
}
