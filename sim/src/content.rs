//! What the simulated devices write: every write is a whole file whose first line
//! names its writer, and whose body follows from that line, so any read can be
//! checked on its own (a mix of two versions never passes), and every write can be
//! looked for afterwards by its hash.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One write: the device and its running count name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    pub seed: u64,
    pub device: usize,
    pub write: u64,
    pub len: usize,
}

impl Token {
    pub fn bytes(&self) -> Vec<u8> {
        let mut bytes = self.header().into_bytes();
        let mut rng = StdRng::seed_from_u64(
            self.seed ^ (self.device as u64).rotate_left(48) ^ self.write.rotate_left(16),
        );
        let start = bytes.len();
        bytes.resize(start + self.len, 0);
        // Text, so that a failing run's files can be read.
        for byte in &mut bytes[start..] {
            *byte = b'a' + rng.random_range(0..26u8);
        }
        bytes
    }

    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes()).as_bytes()
    }

    fn header(&self) -> String {
        format!(
            "loft-sim seed {} device {} write {} length {}\n",
            self.seed, self.device, self.write, self.len
        )
    }

    /// The token a whole file's content is, if it is exactly one.
    pub fn parse(content: &[u8]) -> Option<Token> {
        let end = content.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&content[..end]).ok()?;
        let words: Vec<&str> = header.split(' ').collect();
        let [
            "loft-sim",
            "seed",
            seed,
            "device",
            device,
            "write",
            write,
            "length",
            len,
        ] = words.as_slice()
        else {
            return None;
        };
        let token = Token {
            seed: seed.parse().ok()?,
            device: device.parse().ok()?,
            write: write.parse().ok()?,
            len: len.parse().ok()?,
        };
        (token.bytes() == content).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_and_a_mix_does_not() {
        let a = Token {
            seed: 7,
            device: 1,
            write: 3,
            len: 100,
        };
        let b = Token { write: 4, ..a };
        assert_eq!(Token::parse(&a.bytes()), Some(a));
        let mut mixed = a.bytes();
        mixed[60..].copy_from_slice(&b.bytes()[60..]);
        assert_eq!(Token::parse(&mixed), None);
        assert_eq!(Token::parse(&a.bytes()[..50]), None);
    }
}
