//! A small XML-RPC client for supervisord, over its unix socket or its inet HTTP server.
//!
//! Hand-written rather than a dependency: supervisord speaks plain HTTP/1.0 XML-RPC with a fixed,
//! small set of value types, and the unix socket (the channel `list` and `--apply` prefer, since
//! it needs no password) is not something the HTTP client crates in use here can talk to.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// supervisord's fault code for "that stop failed" in stopProcessGroup results.
pub const FAULT_FAILED: i64 = 30;

/// Where supervisord listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Its `[unix_http_server]` socket (no credentials: the socket's mode protects it).
    Unix(PathBuf),
    /// Its `[inet_http_server]`, `host:port`, with Basic credentials when it has them.
    Inet {
        addr: String,
        auth: Option<(String, String)>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Inet { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// An XML-RPC value (the types supervisord sends).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Str(String),
    Double(f64),
    Array(Vec<Value>),
    Struct(BTreeMap<String, Value>),
    Nil,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// A member of a struct.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Struct(m) => m.get(key),
            _ => None,
        }
    }
}

/// Why a call failed.
#[derive(Debug)]
pub enum RpcError {
    /// Nothing listens there (no socket file, or connection refused): supervisord is not running.
    NotRunning { endpoint: String },
    /// Something else stopped the connection (permissions, timeout, ...).
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    /// The server refused the credentials.
    Unauthorized { endpoint: String },
    /// An HTTP status other than 200.
    Http {
        endpoint: String,
        status: u16,
        body: String,
    },
    /// supervisord answered with an XML-RPC fault.
    Fault { code: i64, message: String },
    /// The reply was not the XML-RPC supervisord sends.
    Malformed { endpoint: String, why: String },
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::NotRunning { endpoint } => write!(
                f,
                "supervisord is not running (nothing answers on {endpoint}); start it with `supervisord -c` and the generated supervisord.conf"
            ),
            RpcError::Connect { endpoint, source } => {
                let hint = if source.kind() == std::io::ErrorKind::PermissionDenied {
                    "; the socket belongs to the user supervisord runs as, run this command as that user"
                } else {
                    ""
                };
                write!(f, "cannot talk to supervisord on {endpoint}: {source}{hint}")
            }
            RpcError::Unauthorized { endpoint } => write!(
                f,
                "supervisord on {endpoint} refused the username and password; check [supervisor] in the configuration"
            ),
            RpcError::Http {
                endpoint,
                status,
                body,
            } => write!(
                f,
                "supervisord on {endpoint} answered HTTP {status}: {}",
                body.chars().take(200).collect::<String>().trim()
            ),
            RpcError::Fault { code, message } => {
                write!(f, "supervisord refused the request: {message} (fault {code})")
            }
            RpcError::Malformed { endpoint, why } => {
                write!(f, "supervisord on {endpoint} sent an unreadable reply: {why}")
            }
        }
    }
}

impl std::error::Error for RpcError {}

/// Calls `method` with `params`, waiting at most `timeout` for each read and write.
pub fn call(
    endpoint: &Endpoint,
    method: &str,
    params: &[Value],
    timeout: Duration,
) -> Result<Value, RpcError> {
    let body = request_body(method, params);
    let (status, reply) = post(endpoint, &body, timeout)?;
    let name = endpoint.to_string();
    match status {
        200 => {}
        401 => return Err(RpcError::Unauthorized { endpoint: name }),
        _ => {
            return Err(RpcError::Http {
                endpoint: name,
                status,
                body: reply,
            })
        }
    }
    parse_response(&reply).map_err(|e| match e {
        ParseError::Fault(code, message) => RpcError::Fault { code, message },
        ParseError::Bad(why) => RpcError::Malformed {
            endpoint: name,
            why,
        },
    })
}

/// The XML of a methodCall.
pub fn request_body(method: &str, params: &[Value]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>{}</methodName><params>",
        escape(method)
    );
    for p in params {
        s.push_str("<param>");
        write_value(&mut s, p);
        s.push_str("</param>");
    }
    s.push_str("</params></methodCall>\n");
    s
}

fn write_value(s: &mut String, v: &Value) {
    s.push_str("<value>");
    match v {
        Value::Int(n) => s.push_str(&format!("<int>{n}</int>")),
        Value::Bool(b) => s.push_str(&format!("<boolean>{}</boolean>", u8::from(*b))),
        Value::Str(t) => s.push_str(&format!("<string>{}</string>", escape(t))),
        Value::Double(d) => s.push_str(&format!("<double>{d}</double>")),
        Value::Nil => s.push_str("<nil/>"),
        Value::Array(a) => {
            s.push_str("<array><data>");
            for x in a {
                write_value(s, x);
            }
            s.push_str("</data></array>");
        }
        Value::Struct(m) => {
            s.push_str("<struct>");
            for (k, x) in m {
                s.push_str(&format!("<member><name>{}</name>", escape(k)));
                write_value(s, x);
                s.push_str("</member>");
            }
            s.push_str("</struct>");
        }
    }
    s.push_str("</value>");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Sends one HTTP/1.0 POST to /RPC2 and returns the status and body. HTTP/1.0 makes the server
/// close the connection after the reply, so the body is simply everything until EOF.
fn post(endpoint: &Endpoint, body: &str, timeout: Duration) -> Result<(u16, String), RpcError> {
    let name = endpoint.to_string();
    let connect_err = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            RpcError::NotRunning {
                endpoint: name.clone(),
            }
        }
        _ => RpcError::Connect {
            endpoint: name.clone(),
            source: e,
        },
    };
    let mut head = format!(
        "POST /RPC2 HTTP/1.0\r\nHost: localhost\r\nUser-Agent: loglines\r\n\
         Content-Type: text/xml\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Endpoint::Inet {
        auth: Some((u, p)), ..
    } = endpoint
    {
        head.push_str(&format!("Authorization: {}\r\n", basic_auth(u, p)));
    }
    head.push_str("\r\n");
    let request = format!("{head}{body}");
    let raw = match endpoint {
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path).map_err(connect_err)?;
            s.set_read_timeout(Some(timeout)).map_err(connect_err)?;
            s.set_write_timeout(Some(timeout)).map_err(connect_err)?;
            exchange(s, &request)
        }
        Endpoint::Inet { addr, .. } => {
            // supervisord binds IPv4 only, while `localhost` may resolve to ::1 first: try each.
            let mut last = std::io::Error::other("the address resolves to nothing");
            let mut stream = None;
            for sa in addr.to_socket_addrs().map_err(connect_err)? {
                match TcpStream::connect_timeout(&sa, timeout) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let s = stream.ok_or(last).map_err(connect_err)?;
            s.set_read_timeout(Some(timeout)).map_err(connect_err)?;
            s.set_write_timeout(Some(timeout)).map_err(connect_err)?;
            exchange(s, &request)
        }
    }
    .map_err(|e| RpcError::Connect {
        endpoint: name.clone(),
        source: e,
    })?;
    parse_http(&raw).map_err(|why| RpcError::Malformed {
        endpoint: name,
        why,
    })
}

fn exchange(mut s: impl Read + Write, request: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(request.as_bytes())?;
    s.flush()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Splits a raw HTTP response into status and body, undoing chunked encoding if used.
pub fn parse_http(raw: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("no end of the HTTP header")?;
    let status_line = head.lines().next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size_line, rest) = s.split_once("\r\n").ok_or("truncated chunk size")?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size `{hex}`"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.push_str(chunk);
        s = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
}

/// Why a methodResponse could not be turned into a value.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    Fault(i64, String),
    Bad(String),
}

/// Parses a methodResponse: its one param value, or its fault.
pub fn parse_response(xml: &str) -> Result<Value, ParseError> {
    let mut p = Parser { s: xml, pos: 0 };
    p.skip_prolog();
    p.open("methodResponse")?;
    if p.peek_open("fault") {
        p.open("fault")?;
        let v = p.value()?;
        let code = v.get("faultCode").and_then(Value::as_int).unwrap_or(0);
        let message = v
            .get("faultString")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Err(ParseError::Fault(code, message));
    }
    p.open("params")?;
    p.open("param")?;
    let v = p.value()?;
    p.close("param")?;
    p.close("params")?;
    p.close("methodResponse")?;
    Ok(v)
}

/// A cursor over XML text that knows just the shapes XML-RPC uses.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn bad<T>(&self, what: &str) -> Result<T, ParseError> {
        let near: String = self.rest().chars().take(60).collect();
        Err(ParseError::Bad(format!("expected {what} near `{near}`")))
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    fn skip_prolog(&mut self) {
        self.skip_ws();
        if self.rest().starts_with("<?") {
            if let Some(end) = self.rest().find("?>") {
                self.pos += end + 2;
            }
        }
        self.skip_ws();
    }

    fn peek_open(&mut self, tag: &str) -> bool {
        self.skip_ws();
        let r = self.rest();
        r.strip_prefix('<')
            .and_then(|r| r.strip_prefix(tag))
            .is_some_and(|r| r.starts_with('>') || r.starts_with("/>"))
    }

    /// Consumes `<tag>`; returns false if it was `<tag/>` (empty element).
    fn open(&mut self, tag: &str) -> Result<bool, ParseError> {
        self.skip_ws();
        let full = format!("<{tag}>");
        let empty = format!("<{tag}/>");
        if self.rest().starts_with(&full) {
            self.pos += full.len();
            Ok(true)
        } else if self.rest().starts_with(&empty) {
            self.pos += empty.len();
            Ok(false)
        } else {
            self.bad(&full)
        }
    }

    fn close(&mut self, tag: &str) -> Result<(), ParseError> {
        self.skip_ws();
        let full = format!("</{tag}>");
        if self.rest().starts_with(&full) {
            self.pos += full.len();
            Ok(())
        } else {
            self.bad(&full)
        }
    }

    /// Text up to the next `<`, unescaped.
    fn text(&mut self) -> String {
        let r = self.rest();
        let end = r.find('<').unwrap_or(r.len());
        self.pos += end;
        unescape(&r[..end])
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        if !self.open("value")? {
            return Ok(Value::Str(String::new()));
        }
        // An untyped value is a string; its whitespace is significant, so look before skipping.
        let raw = self.rest();
        if !raw.trim_start().starts_with('<') || raw.trim_start().starts_with("</value>") {
            let t = self.text();
            self.close("value")?;
            return Ok(Value::Str(t));
        }
        self.skip_ws();
        let r = self.rest();
        let tag_end = r.find(['>', '/']).unwrap_or(r.len());
        let tag = r.get(1..tag_end).unwrap_or("").to_string();
        let v = match tag.as_str() {
            "string" => {
                if self.open("string")? {
                    let t = self.text();
                    self.close("string")?;
                    Value::Str(t)
                } else {
                    Value::Str(String::new())
                }
            }
            "int" | "i4" | "i8" => Value::Int(self.number(&tag, "an integer")?),
            "boolean" => Value::Bool(self.scalar("boolean")?.trim() == "1"),
            "double" => Value::Double(self.number("double", "a number")?),
            "nil" => {
                self.open("nil")?;
                Value::Nil
            }
            "array" => self.array()?,
            "struct" => self.structure()?,
            other => return self.bad(&format!("an XML-RPC type, not <{other}>")),
        };
        self.close("value")?;
        Ok(v)
    }

    /// The text of `<tag>text</tag>`.
    fn scalar(&mut self, tag: &str) -> Result<String, ParseError> {
        self.open(tag)?;
        let t = self.text();
        self.close(tag)?;
        Ok(t)
    }

    /// `<tag>number</tag>`; `what` names the kind for the error.
    fn number<T: std::str::FromStr>(&mut self, tag: &str, what: &str) -> Result<T, ParseError> {
        let t = self.scalar(tag)?;
        t.trim()
            .parse()
            .map_err(|_| ParseError::Bad(format!("`{t}` is not {what}")))
    }

    /// `<array><data><value>...</value>...</data></array>`.
    fn array(&mut self) -> Result<Value, ParseError> {
        self.open("array")?;
        let mut items = Vec::new();
        if self.open("data")? {
            while self.peek_open("value") {
                items.push(self.value()?);
            }
            self.close("data")?;
        }
        self.close("array")?;
        Ok(Value::Array(items))
    }

    /// `<struct><member><name>k</name><value>...</value></member>...</struct>`.
    fn structure(&mut self) -> Result<Value, ParseError> {
        let mut m = BTreeMap::new();
        if self.open("struct")? {
            while self.peek_open("member") {
                self.open("member")?;
                let k = self.scalar("name")?;
                let v = self.value()?;
                self.close("member")?;
                m.insert(k, v);
            }
            self.close("struct")?;
        }
        Ok(Value::Struct(m))
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').and_then(|semi| {
            let entity = &tail[1..semi];
            let ch = match entity {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            ch.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of an `Authorization` header for HTTP Basic authentication (RFC 7617).
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like what Python's xmlrpc.client produces for getAllProcessInfo.
    const PROCESS_INFO: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n\
<value><array><data>\n<value><struct>\n<member>\n<name>name</name>\n<value><string>w_00</string></value>\n</member>\n\
<member>\n<name>group</name>\n<value><string>w</string></value>\n</member>\n\
<member>\n<name>pid</name>\n<value><int>4242</int></value>\n</member>\n\
<member>\n<name>description</name>\n<value><string>pid 4242, uptime 0:00:03 &amp; &lt;more&gt;</string></value>\n</member>\n\
<member>\n<name>spawnerr</name>\n<value><string></string></value>\n</member>\n\
</struct></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n";

    #[test]
    fn parses_process_info() {
        let v = parse_response(PROCESS_INFO).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].get("name").and_then(Value::as_str), Some("w_00"));
        assert_eq!(a[0].get("pid").and_then(Value::as_int), Some(4242));
        assert_eq!(
            a[0].get("description").and_then(Value::as_str),
            Some("pid 4242, uptime 0:00:03 & <more>")
        );
        assert_eq!(a[0].get("spawnerr").and_then(Value::as_str), Some(""));
    }

    #[test]
    fn parses_nested_arrays_booleans_and_untyped_strings() {
        let xml = "<methodResponse><params><param><value><array><data>\
<value><array><data><value>added one</value><value><string>x</string></value></data></array></value>\
<value><array><data/></array></value>\
<value><boolean>1</boolean></value><value><i4>-7</i4></value><value><string/></value><value></value>\
</data></array></value></param></params></methodResponse>";
        let v = parse_response(xml).unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Array(vec![Value::Str("added one".into()), Value::Str("x".into())]),
                Value::Array(vec![]),
                Value::Bool(true),
                Value::Int(-7),
                Value::Str(String::new()),
                Value::Str(String::new()),
            ])
        );
    }

    #[test]
    fn faults_carry_code_and_text() {
        let xml = "<?xml version='1.0'?><methodResponse><fault><value><struct>\
<member><name>faultCode</name><value><int>10</int></value></member>\
<member><name>faultString</name><value><string>BAD_NAME: nope</string></value></member>\
</struct></value></fault></methodResponse>";
        assert_eq!(
            parse_response(xml),
            Err(ParseError::Fault(10, "BAD_NAME: nope".into()))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "",
            "<html>",
            "<methodResponse><params><param><value><int>x</int></value>",
            "<methodResponse><params><param><value><blob/></value>",
        ] {
            assert!(
                matches!(parse_response(bad), Err(ParseError::Bad(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn request_round_trips_through_the_parser() {
        let body = request_body(
            "supervisor.stopProcessGroup",
            &[Value::Str("a<&>b".into()), Value::Bool(true)],
        );
        assert!(body.contains("<methodName>supervisor.stopProcessGroup</methodName>"));
        assert!(body.contains("<string>a&lt;&amp;&gt;b</string>"));
        assert!(body.contains("<boolean>1</boolean>"));
    }

    #[test]
    fn http_plain_and_chunked() {
        let (s, b) = parse_http(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<x/>").unwrap();
        assert_eq!((s, b.as_str()), (200, "<x/>"));
        let (s, b) = parse_http(
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nno p\r\n5\r\nass!!\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_str()), (401, "no pass!!"));
        assert!(parse_http(b"garbage").is_err());
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(basic_auth("user", "pa:ss"), "Basic dXNlcjpwYTpzcw==");
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `reply`; returns its port and, through
    /// the join handle, the request it received.
    fn one_shot(reply: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // Read the head and the announced body, then answer and close (HTTP/1.0).
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, h)
    }

    #[test]
    fn over_tcp_with_basic_credentials() {
        let (port, h) = one_shot(
            "HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<?xml version='1.0'?>\
             <methodResponse><params><param><value><struct><member><name>statename</name>\
             <value><string>RUNNING</string></value></member></struct></value></param></params></methodResponse>",
        );
        let ep = Endpoint::Inet {
            addr: format!("localhost:{port}"),
            auth: Some(("user".into(), "pa:ss".into())),
        };
        let v = call(&ep, "supervisor.getState", &[], Duration::from_secs(5)).unwrap();
        assert_eq!(v.get("statename").and_then(Value::as_str), Some("RUNNING"));
        let req = h.join().unwrap();
        assert!(req.starts_with("POST /RPC2 HTTP/1.0\r\n"), "{req}");
        assert!(
            req.contains("Authorization: Basic dXNlcjpwYTpzcw==\r\n"),
            "{req}"
        );
        assert!(req.ends_with("</methodCall>\n"), "{req}");
    }

    #[test]
    fn refused_credentials_and_closed_ports() {
        let (port, h) = one_shot("HTTP/1.0 401 Unauthorized\r\n\r\n");
        let ep = Endpoint::Inet {
            addr: format!("127.0.0.1:{port}"),
            auth: None,
        };
        let e = call(&ep, "supervisor.getState", &[], Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, RpcError::Unauthorized { .. }), "{e}");
        h.join().unwrap();
        // Nothing listens on that port any more.
        let e = call(&ep, "supervisor.getState", &[], Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, RpcError::NotRunning { .. }), "{e}");
    }

    #[test]
    fn a_missing_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let e = call(
            &Endpoint::Unix(dir.path().join("none.sock")),
            "supervisor.getState",
            &[],
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, RpcError::NotRunning { .. }), "{e}");
    }
}
