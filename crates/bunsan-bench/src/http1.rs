//! A minimal blocking HTTP/1.1 client connection: write a request, read one response
//! (Content-Length or chunked body, discarded), keep the connection for the next one.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// How many header lines a response may have.
const MAX_HEADERS: usize = 64;

/// One response as the generator needs it: the status and how many body bytes came.
#[derive(Debug, Clone, Copy)]
pub struct Response {
    pub status: u16,
    pub body_len: u64,
    /// The server said `Connection: close`; the connection must not be reused.
    pub close: bool,
}

/// How the body of a response is delimited.
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// A keep-alive client connection with its read buffer.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Unread bytes are `buf[pos..]`.
    pos: usize,
}

impl Conn {
    /// Connects with `TCP_NODELAY`.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(16 * 1024), pos: 0 })
    }

    /// Writes a whole request.
    pub fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)
    }

    /// Reads one response, discarding its body.
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (status, framing, close, head_len) = loop {
            if let Some(parsed) = parse_head(&self.buf[self.pos..])? {
                break parsed;
            }
            self.fill()?;
        };
        self.pos += head_len;
        let body_len = match framing {
            Framing::Length(n) => self.skip(n)?,
            Framing::Chunked => self.skip_chunked()?,
            Framing::UntilClose => self.skip_to_eof()?,
        };
        let close = close || matches!(framing, Framing::UntilClose);
        Ok(Response { status, body_len, close })
    }

    /// Reads more bytes into the buffer; end of stream is an error.
    fn fill(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 0 && self.buf.len() > 8 * 1024 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 16 * 1024, 0);
        let read = self.stream.read(&mut self.buf[old..]);
        self.buf.truncate(old + read.as_ref().map_or(0, |&n| n));
        match read? {
            0 => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed")),
            n => Ok(n),
        }
    }

    /// Discards exactly `n` body bytes.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let mut left = n;
        while left > 0 {
            if self.pos == self.buf.len() {
                self.fill()?;
            }
            let take = left.min((self.buf.len() - self.pos) as u64);
            self.pos += take as usize;
            left -= take;
        }
        Ok(n)
    }

    /// Discards a chunked body (and its trailers), returning the payload size.
    fn skip_chunked(&mut self) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let line = self.line()?;
            let size = chunk_size(&line)?;
            if size == 0 {
                while !self.line()?.is_empty() {}
                return Ok(total);
            }
            total += self.skip(size)?;
            self.line()?;
        }
    }

    /// Reads until the server closes the connection.
    fn skip_to_eof(&mut self) -> io::Result<u64> {
        let mut total = (self.buf.len() - self.pos) as u64;
        self.pos = self.buf.len();
        loop {
            match self.fill() {
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(total),
                Err(e) => return Err(e),
            }
            self.pos = self.buf.len();
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(i) = unread.windows(2).position(|w| w == b"\r\n") {
                let line = unread[..i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }
}

/// Parses a response head if it is complete: status, framing, `Connection: close`, length.
fn parse_head(bytes: &[u8]) -> io::Result<Option<(u16, Framing, bool, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or(0);
    let mut framing = Framing::UntilClose;
    let mut close = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(parse_decimal(header.value)?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            framing = Framing::Chunked;
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some((status, framing, close, len)))
}

fn parse_decimal(value: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    std::str::from_utf8(hex)
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
}

/// The bytes of a `GET path` request with keep-alive.
pub fn get_request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bunsan-bench\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Serves `replies` in order on one accepted connection, reading a request before each.
    fn serve(replies: Vec<&'static [u8]>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            for reply in replies {
                let mut request = [0u8; 1024];
                let _read = stream.read(&mut request).expect("read");
                stream.write_all(reply).expect("write");
            }
        });
        addr
    }

    #[test]
    fn reads_length_and_chunked_bodies_on_one_connection() {
        let addr = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let mut conn = Conn::connect(addr).expect("connect");
        let request = get_request("/", "x");
        conn.send(&request).expect("send");
        let first = conn.read_response().expect("first");
        assert_eq!((first.status, first.body_len, first.close), (200, 5, false));
        conn.send(&request).expect("send");
        assert_eq!(conn.read_response().expect("second").body_len, 5);
        conn.send(&request).expect("send");
        let third = conn.read_response().expect("third");
        assert_eq!((third.status, third.close), (404, true));
    }

    #[test]
    fn a_closed_connection_is_an_error() {
        let addr = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"]);
        let mut conn = Conn::connect(addr).expect("connect");
        conn.send(&get_request("/", "x")).expect("send");
        assert!(conn.read_response().is_err());
    }
}
