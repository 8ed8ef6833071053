//! Just enough RESP2 to send a command and read its reply over a blocking TCP socket.
//!
//! The test helper deliberately avoids a Redis client crate: it has to work while the
//! crates under test (which do use a client) are broken, and it must not share their bugs.

use std::fmt;
use std::io::{self, BufRead, Write};

/// One RESP2 reply, as returned by [`RedisServer::query`](crate::RedisServer::query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`-style status reply.
    Simple(String),
    /// `-ERR ...` error reply (the text after the `-`).
    Error(String),
    /// `:42` integer reply.
    Integer(i64),
    /// `$n` bulk string.
    Bulk(Vec<u8>),
    /// `$-1` / `*-1`: the null bulk string or null array.
    Nil,
    /// `*n` array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The reply as text, if it is a status, error or bulk string (bulk is decoded lossily).
    pub fn as_text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) | Reply::Error(s) => Some(s.clone()),
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply as an integer, if it is one (or a bulk string holding a decimal number).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Reply::Integer(n) => Some(*n),
            Reply::Bulk(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// Renders like a terse `redis-cli --no-raw`: scalars as their text, nil as `(nil)`,
/// array elements one per line (nested arrays flattened).
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => f.write_str(s),
            Reply::Error(s) => write!(f, "(error) {s}"),
            Reply::Integer(n) => write!(f, "{n}"),
            Reply::Bulk(b) => f.write_str(&String::from_utf8_lossy(b)),
            Reply::Nil => f.write_str("(nil)"),
            Reply::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
        }
    }
}

/// Encodes a command as a RESP array of bulk strings (binary safe, no quoting rules).
pub(crate) fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    // Writing to a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads exactly one reply.
pub(crate) fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let line = read_line(r)?;
    let mut chars = line.chars();
    // `read_line` never returns an empty line.
    let kind = chars.next().unwrap_or('?');
    let rest = chars.as_str();
    match kind {
        '+' => Ok(Reply::Simple(rest.to_owned())),
        '-' => Ok(Reply::Error(rest.to_owned())),
        ':' => Ok(Reply::Integer(parse_int(rest)?)),
        '$' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            let len = usize::try_from(len).map_err(|_| invalid("bulk length overflows"))?;
            let mut buf = vec![0; len + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(invalid("bulk string not terminated by CRLF"));
            }
            buf.truncate(len);
            Ok(Reply::Bulk(buf))
        }
        '*' => {
            let len = parse_int(rest)?;
            if len < 0 {
                return Ok(Reply::Nil);
            }
            (0..len)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()
                .map(Reply::Array)
        }
        other => Err(invalid(&format!("unknown RESP type byte {other:?}"))),
    }
}

/// Reads one CRLF-terminated line (without the CRLF); EOF is an error.
fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a reply",
        ));
    }
    let Some(line) = line.strip_suffix("\r\n") else {
        return Err(invalid("reply line not terminated by CRLF"));
    };
    if line.is_empty() {
        return Err(invalid("empty reply line"));
    }
    Ok(line.to_owned())
}

fn parse_int(s: &str) -> io::Result<i64> {
    s.parse()
        .map_err(|_| invalid(&format!("invalid integer {s:?} in reply")))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut io::BufReader::new(bytes))
    }

    #[test]
    fn encodes_commands_as_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(parse(b"+PONG\r\n").unwrap(), Reply::Simple("PONG".into()));
        assert_eq!(
            parse(b"-ERR unknown\r\n").unwrap(),
            Reply::Error("ERR unknown".into())
        );
        assert_eq!(parse(b":-12\r\n").unwrap(), Reply::Integer(-12));
        assert_eq!(
            parse(b"$5\r\na\r\nbc\r\n").unwrap(),
            Reply::Bulk(b"a\r\nbc".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Integer(1),
                Reply::Array(vec![Reply::Bulk(b"x".to_vec())])
            ])
        );
    }

    #[test]
    fn rejects_truncated_and_malformed_replies() {
        assert_eq!(parse(b"").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            parse(b"$3\r\nab").unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            parse(b":x\r\n").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            parse(b"?1\r\n").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            parse(b"+OK\n").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            parse(b"$2\r\nabcd").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn displays_like_redis_cli() {
        let reply = Reply::Array(vec![
            Reply::Bulk(b"a".to_vec()),
            Reply::Nil,
            Reply::Integer(3),
        ]);
        assert_eq!(reply.to_string(), "a\n(nil)\n3");
        assert_eq!(Reply::Bulk(b"7".to_vec()).as_integer(), Some(7));
        assert_eq!(Reply::Nil.as_text(), None);
    }
}
