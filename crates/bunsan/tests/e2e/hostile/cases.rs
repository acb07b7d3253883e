//! The request cases, grouped by class. Accepted cases end with `Connection: close` so
//! the exchange ends as soon as the answer is out.

use super::Case;
use super::Expect::{Broken, Forward, Normalised, Reject};

macro_rules! case {
    ($class:literal, $name:literal, $bytes:expr, $expect:expr) => {
        Case { class: $class, name: $name, bytes: $bytes, expect: $expect }
    };
}

pub const REQUESTS: &[Case] = &[
    // Content-Length and Transfer-Encoding together, or Content-Length twice.
    case!("cl-te", "CL then TE", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", Normalised("")),
    case!("cl-te", "TE then CL", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Normalised("hello")),
    case!("cl-te", "CL with TE identity", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: identity\r\n\r\nhi", Reject(400)),
    case!("cl-te", "two differing CL", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello", Reject(400)),
    case!("cl-te", "CL list differing", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 5\r\n\r\nhello", Reject(400)),
    case!("cl-te", "two identical CL", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", Forward("hello")),
    case!("cl-te", "one CL", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", Forward("hello")),
    // Content-Length values.
    case!("cl-value", "plus sign", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", Reject(400)),
    case!("cl-value", "minus sign", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello", Reject(400)),
    case!("cl-value", "hex", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", Reject(400)),
    case!("cl-value", "inner space", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nhello", Reject(400)),
    case!("cl-value", "trailing letter", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5a\r\n\r\nhello", Reject(400)),
    case!("cl-value", "empty", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\nhello", Reject(400)),
    case!("cl-value", "overflow", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nhello", Reject(400)),
    case!("cl-value", "decimal point", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello", Reject(400)),
    case!("cl-value", "leading zeros", b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nConnection: close\r\n\r\nhello", Forward("hello")),
    // Transfer-Encoding values.
    case!("te-value", "final coding gzip", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello", Reject(400)),
    case!("te-value", "chunked then gzip", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "gzip then chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "chunked twice in one", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "chunked twice in two", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "xchunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "chunked with parameter", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "identity", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\nhello", Reject(400)),
    case!("te-value", "empty", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\nhello", Reject(400)),
    case!("te-value", "TE in HTTP/1.0", b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-value", "upper-case chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forward("hello")),
    case!("te-value", "plain chunked", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Forward("hello")),
    // Obfuscated Transfer-Encoding header names and values.
    case!("te-obfuscated", "space before colon", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "tab before colon", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "vertical tab in value", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "form feed in value", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x0c\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "folded value", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "leading space line", b"POST /echo HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "NUL in value", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x00\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    case!("te-obfuscated", "quoted value", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Reject(400)),
    // Header lines.
    case!("header", "obsolete line folding", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n", Reject(400)),
    case!("header", "bare CR in value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", Reject(400)),
    case!("header", "bare CR line end", b"GET /echo HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", Reject(400)),
    case!("header", "NUL in value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", Reject(400)),
    case!("header", "space in name", b"GET /echo HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n", Reject(400)),
    case!("header", "parenthesis in name", b"GET /echo HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", Reject(400)),
    case!("header", "empty name", b"GET /echo HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", Reject(400)),
    case!("header", "no colon", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", Reject(400)),
    case!("header", "non-ASCII name", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-\xc3\xa9: b\r\n\r\n", Reject(400)),
    case!("header", "DEL in value", b"GET /echo HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", Reject(400)),
    case!("header", "bare LF line ends are re-serialised", b"POST /echo HTTP/1.1\nHost: a\nContent-Length: 2\nConnection: close\n\nhi", Forward("hi")),
    // Chunked bodies.
    case!("chunked", "size not hex", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "size overflow", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "size with plus", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "size with minus", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "size with 0x", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "data longer than size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "missing CRLF after data", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", Broken),
    case!("chunked", "bare CR after size", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n", Broken),
    case!("chunked", "extension accepted", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=value\r\nhello\r\n0\r\n\r\n", Forward("hello")),
    case!("chunked", "trailer accepted", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", Forward("hello")),
    case!("chunked", "bad trailer", b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX T: 1\r\n\r\n", Broken),
    // Request lines.
    case!("request-line", "double space", b"GET  /echo HTTP/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "trailing space", b"GET /echo HTTP/1.1 \r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "DEL in target", b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "bad method character", b"G@T /echo HTTP/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "no version", b"GET /echo\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "HTTP/2.0 over HTTP/1", b"GET /echo HTTP/2.0\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "HTTP/1.2", b"GET /echo HTTP/1.2\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "lower-case version", b"GET /echo http/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    case!("request-line", "method only", b"GET\r\n\r\n", Reject(400)),
    case!("request-line", "CONNECT is not proxied", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", Reject(405)),
    case!("request-line", "asterisk for GET", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Reject(400)),
    // Host.
    case!("host", "missing in HTTP/1.1", b"GET /echo HTTP/1.1\r\n\r\n", Reject(400)),
    case!("host", "two Host headers", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Reject(400)),
    case!("host", "two identical Host headers", b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Reject(400)),
    case!("host", "empty Host", b"GET /echo HTTP/1.1\r\nHost: \r\n\r\n", Reject(400)),
    case!("host", "space inside Host", b"GET /echo HTTP/1.1\r\nHost: a b\r\n\r\n", Reject(400)),
    case!("host", "userinfo in Host", b"GET /echo HTTP/1.1\r\nHost: user@evil.example\r\n\r\n", Reject(400)),
    case!("host", "absolute form disagreeing with Host", b"GET http://evil.example/echo HTTP/1.1\r\nHost: good.example\r\n\r\n", Reject(400)),
    case!("host", "absolute form agreeing with Host", b"POST http://good.example/echo HTTP/1.1\r\nHost: good.example\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", Forward("ok")),
    case!("host", "absolute form with bad scheme", b"GET ftp://good.example/echo HTTP/1.1\r\nHost: good.example\r\n\r\n", Reject(400)),
];
