//! Where a server is: `http://HOST:PORT`, `https://HOST:PORT` or `unix:/PATH`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A server address as users write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddress {
    /// gRPC over TCP; `https` turns TLS on.
    Url(String),
    /// gRPC over a unix socket (the embedded server).
    Unix(PathBuf),
}

impl FromStr for ServerAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return Ok(ServerAddress::Unix(PathBuf::from(path)));
        }
        if (text.starts_with("http://") || text.starts_with("https://"))
            && text
                .parse::<http::Uri>()
                .is_ok_and(|uri| uri.host().is_some())
        {
            return Ok(ServerAddress::Url(text.trim_end_matches('/').to_string()));
        }
        Err(format!(
            "invalid server address {text:?}: expected http://HOST:PORT, https://HOST:PORT or unix:/PATH"
        ))
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Url(url) => f.write_str(url),
            ServerAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "http://127.0.0.1:7070/".parse::<ServerAddress>().unwrap(),
            ServerAddress::Url("http://127.0.0.1:7070".into())
        );
        assert_eq!(
            "unix:/tmp/s".parse::<ServerAddress>().unwrap(),
            ServerAddress::Unix("/tmp/s".into())
        );
        assert!("127.0.0.1:7070".parse::<ServerAddress>().is_err());
        assert!("ftp://x".parse::<ServerAddress>().is_err());
    }
}
