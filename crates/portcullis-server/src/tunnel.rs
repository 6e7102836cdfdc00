//! The egress proxy of a launched program whose catalog entry grants network
//! (`[programs.NAME.sandbox] network = "egress"`): the only thing its network namespace
//! holds. It speaks HTTP CONNECT only (what `HTTPS_PROXY` clients send); every destination
//! is vetted by the gateway's egress policy and the tenant's host list before a byte leaves,
//! and a refusal is answered 403 and audited (`egress_refused`, the rule, never the target's
//! path or credentials). Written by hand: a CONNECT head and a byte copy are all it needs,
//! and the vetting is ours.

use crate::egress::{Egress, HostAllowList};
use portcullis_core::id::{ConnectionId, TenantId};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Longest request head a program may send.
const MAX_HEAD: usize = 8 * 1024;
/// How long a program has to send its head, and the proxy to reach the destination.
const DEADLINE: Duration = Duration::from_secs(10);
/// Most tunnels one program holds open at once (each is two of the gateway's descriptors).
pub const MAX_TUNNELS: usize = 32;

/// Whose tunnels these are and what may leave.
#[derive(Clone)]
pub struct Tunnels {
    pub egress: Arc<Egress>,
    pub hosts: HostAllowList,
    pub store: portcullis_store::Store,
    pub clock: crate::clock::Clock,
    pub tenant: TenantId,
    pub connection: ConnectionId,
    /// Destination ports allowed (empty: any the egress policy allows).
    pub ports: Vec<u16>,
    /// Open tunnels, at most [`MAX_TUNNELS`].
    pub open: Arc<tokio::sync::Semaphore>,
}

/// Serve `listener` until `stop` is cancelled (the program ended).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tunnels: Tunnels,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
                        accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else {
                    // Out of descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(permit) = tunnels.open.clone().try_acquire_owned() else {
                    answer(&mut stream, "503 Service Unavailable", "too many open tunnels").await;
                    continue;
                };
                let tunnels = tunnels.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tunnel(stream, &tunnels) => {}
                    }
                });
            }
        }
    }
}

/// Read a CONNECT head: the target, and any bytes that came after the head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Result<(String, Vec<u8>), &'static str> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err("431 Request Header Fields Too Large");
        }
        match tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Err(""),
            Ok(Ok(n)) => buffer.extend_from_slice(&chunk[..n]),
            Err(_) => return Err("408 Request Timeout"),
        }
    };
    let rest = buffer[end + 4..].to_vec();
    let head = std::str::from_utf8(&buffer[..end]).map_err(|_| "400 Bad Request")?;
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("CONNECT"), Some(target), Some(version), None) if version.starts_with("HTTP/1.") => {
            Ok((target.to_owned(), rest))
        }
        (Some("CONNECT"), ..) => Err("400 Bad Request"),
        _ => Err("405 Method Not Allowed"),
    }
}

async fn answer(stream: &mut tokio::net::TcpStream, status: &str, why: &str) {
    let body = format!("{why}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn tunnel(mut stream: tokio::net::TcpStream, tunnels: &Tunnels) {
    let head = tokio::time::timeout(DEADLINE, read_head(&mut stream))
        .await
        .unwrap_or(Err("408 Request Timeout"));
    let (target, rest) = match head {
        Ok(head) => head,
        Err("") => return,
        Err(status) => {
            let why = "only CONNECT (https) leaves through the gateway's egress proxy";
            return answer(&mut stream, status, why).await;
        }
    };
    let addrs = match tunnels.egress.tunnel_addrs(&target, &tunnels.hosts).await {
        Ok(addrs) => addrs,
        Err(refusal) => {
            audit_refusal(tunnels, refusal.rule.name()).await;
            let why = format!("refused by the gateway's egress policy ({})", refusal.rule);
            return answer(&mut stream, "403 Forbidden", &why).await;
        }
    };
    if let Some(addr) = addrs.first()
        && !tunnels.ports.is_empty()
        && !tunnels.ports.contains(&addr.port())
    {
        audit_refusal(tunnels, "port_not_allowed").await;
        let why = "refused: the program's catalog entry does not allow that port";
        return answer(&mut stream, "403 Forbidden", why).await;
    }
    let mut upstream = None;
    for addr in addrs {
        if let Ok(Ok(connected)) =
            tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr)).await
        {
            // An address of this very host that the policy took for public (an interface's
            // own address) would reach the host's own services: refused.
            let own = match (connected.peer_addr(), connected.local_addr()) {
                (Ok(peer), Ok(local)) => !peer.ip().is_loopback() && peer.ip() == local.ip(),
                _ => true,
            };
            if own {
                audit_refusal(tunnels, "own_address").await;
                let why = "refused by the gateway's egress policy (own address)";
                return answer(&mut stream, "403 Forbidden", why).await;
            }
            upstream = Some(connected);
            break;
        }
    }
    let Some(mut upstream) = upstream else {
        return answer(
            &mut stream,
            "502 Bad Gateway",
            "the destination did not answer",
        )
        .await;
    };
    if stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
        || upstream.write_all(&rest).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
}

async fn audit_refusal(tunnels: &Tunnels, rule: &str) {
    let draft = portcullis_core::audit::AuditDraft::new(
        tunnels.tenant.clone(),
        "gateway",
        portcullis_core::audit::AuditKind::EgressRefused,
    )
    .resource(format!("connection:{}", tunnels.connection))
    .detail(serde_json::json!({ "rule": rule, "via": "program egress proxy" }));
    if let Err(e) = tunnels.store.append_audit(draft, tunnels.clock.now()).await {
        tracing::error!(error = %e, "cannot audit an egress refusal");
    }
}
