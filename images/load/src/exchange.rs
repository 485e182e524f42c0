//! One exchange with skiff-echo over each protocol, and how failures are named.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::ports::PortRange;

/// Name a failure the way the reports count it.
pub fn kind(error: &io::Error) -> String {
    use io::ErrorKind::*;
    match error.kind() {
        ConnectionRefused => "refused".to_owned(),
        ConnectionReset | ConnectionAborted | BrokenPipe => "reset".to_owned(),
        TimedOut | WouldBlock => "timeout".to_owned(),
        UnexpectedEof => "closed".to_owned(),
        NetworkUnreachable | HostUnreachable => "unreachable".to_owned(),
        PermissionDenied => "denied".to_owned(),
        _ => format!("other ({error})"),
    }
}

/// Connect (from a port of `ports`, if given) with timeouts on every later operation.
pub fn connect(
    target: SocketAddrV4,
    timeout: Duration,
    ports: Option<PortRange>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(ports) = ports {
        ports.apply(&socket)?;
    }
    socket.connect_timeout(&SocketAddr::V4(target).into(), timeout)?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `GET /` on a keep-alive connection; returns the body (skiff-echo: the hostname).
pub fn http_get(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: skiff-load\r\n\r\n")?;
    read_response(stream, buffer)
}

/// `GET /` with `Connection: close`, then wait for the server to close: the server ends the
/// connection, so its TIME_WAIT stays on the server. A client that closed first would keep
/// one TIME_WAIT per connection for 60 s; at thousands of connections a second to one
/// address its ephemeral ports run out within seconds and each connect() then scans the
/// whole range (measured: p50 5 ms instead of 0.4 ms once 22,000 ports to one pod were in
/// TIME_WAIT), so the result would depend on what ran before rather than on the path.
pub fn http_get_closing(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<String> {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: skiff-load\r\nConnection: close\r\n\r\n")?;
    let body = read_response(stream, buffer)?;
    let mut rest = [0u8; 256];
    match stream.read(&mut rest)? {
        0 => Ok(body),
        _ => Err(io::Error::other(
            "data after the response on a closing connection",
        )),
    }
}

/// Read one response (status 200, Content-Length body); returns the body trimmed.
fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<String> {
    buffer.clear();
    let mut chunk = [0u8; 1024];
    let header_end = loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return Err(io::Error::other("response header too long"));
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default().to_owned();
        return Err(io::Error::other(format!("status {status}")));
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .ok_or_else(|| io::Error::other("no content-length"))?;
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(
        String::from_utf8_lossy(&buffer[header_end..header_end + length])
            .trim()
            .to_owned(),
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Send `payload` and read the same number of bytes back.
pub fn echo(stream: &mut TcpStream, payload: &[u8], back: &mut [u8]) -> io::Result<()> {
    stream.write_all(payload)?;
    stream.read_exact(&mut back[..payload.len()])
}

/// A UDP socket with timeouts.
pub fn udp_socket(timeout: Duration) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    Ok(socket)
}

/// One datagram to `target` on an unconnected socket; the answer and who it came from.
pub fn udp_exchange(
    socket: &UdpSocket,
    target: SocketAddrV4,
    buffer: &mut [u8],
) -> io::Result<(String, SocketAddr)> {
    socket.send_to(b"skiff-load\n", target)?;
    let (read, from) = socket.recv_from(buffer)?;
    Ok((
        String::from_utf8_lossy(&buffer[..read]).trim().to_owned(),
        from,
    ))
}

/// One datagram on a connected socket.
pub fn udp_connected_exchange(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<String> {
    socket.send(b"skiff-load\n")?;
    let read = socket.recv(buffer)?;
    Ok(String::from_utf8_lossy(&buffer[..read]).trim().to_owned())
}
