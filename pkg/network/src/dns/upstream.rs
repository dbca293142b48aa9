//! Forwarding to the host's resolvers: each upstream in turn, over UDP with a retry over TCP
//! when the answer is truncated, two seconds each; and the resolvers of a resolv.conf.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long one upstream has to answer.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The upstream resolvers of a resolv.conf: its `nameserver` lines on port 53, without
/// loopback ones (a pod reaching 127.0.0.53 would reach itself, not the host's resolver).
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        // An IPv6 address may carry a zone (`fe80::1%eth0`), which SocketAddr cannot.
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        let addr = SocketAddr::new(ip, 53);
        if !ip.is_loopback() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The first answer any upstream gives to `query` (a whole DNS message, its ID kept), as raw
/// bytes; `None` if none answered.
pub async fn forward(upstreams: &[SocketAddr], query: &[u8]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for upstream in upstreams {
        match timeout(UPSTREAM_TIMEOUT, ask(*upstream, query, id)).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream failed"),
            Err(_) => tracing::debug!(%upstream, "upstream timed out"),
        }
    }
    None
}

/// One upstream's answer: UDP, then TCP if the UDP answer was truncated.
async fn ask(upstream: SocketAddr, query: &[u8], id: &[u8]) -> std::io::Result<Vec<u8>> {
    let answer = ask_udp(upstream, query, id).await?;
    let truncated = Message::from_vec(&answer).map_or(true, |m| m.metadata.truncation);
    if truncated {
        return ask_tcp(upstream, query, id).await;
    }
    Ok(answer)
}

async fn ask_udp(upstream: SocketAddr, query: &[u8], id: &[u8]) -> std::io::Result<Vec<u8>> {
    let any = match upstream {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Anything not answering our ID (a late or forged packet) is dropped.
        if n >= 12 && buf.get(..2) == Some(id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, query: &[u8], id: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_framed(&mut stream, query).await?;
    let answer = read_framed(&mut stream).await?;
    if answer.len() < 12 || answer.get(..2) != Some(id) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "TCP answer does not match the query",
        ));
    }
    Ok(answer)
}

/// One DNS message over TCP: a two-byte length, then the message.
pub async fn write_framed(
    stream: &mut (impl AsyncWriteExt + Unpin),
    msg: &[u8],
) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "DNS message over 65535 bytes",
        )
    })?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await
}

/// Read one length-prefixed DNS message.
pub async fn read_framed(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut msg = vec![0u8; usize::from(len)];
    stream.read_exact(&mut msg).await?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example.com\nnameserver 127.0.0.53\nnameserver 10.0.0.2\n\
                    nameserver ::1\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\n\
                    nameserver 10.0.0.2\noptions edns0 trust-ad\nnameserver   1.1.1.1  # x\n";
        let got = upstreams_from_resolv_conf(text);
        let want: Vec<SocketAddr> = ["10.0.0.2:53", "[2001:db8::53]:53", "1.1.1.1:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert!(upstreams_from_resolv_conf("nameserver 127.0.0.1\n").is_empty());
    }
}
