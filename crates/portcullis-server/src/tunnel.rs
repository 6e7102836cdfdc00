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

/// Whose tunnels these are and what may leave.
#[derive(Clone)]
pub struct Tunnels {
    pub egress: Arc<Egress>,
    pub hosts: HostAllowList,
    pub store: portcullis_store::Store,
    pub clock: crate::clock::Clock,
    pub tenant: TenantId,
    pub connection: ConnectionId,
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
                let Ok((stream, _)) = accepted else { continue };
                let tunnels = tunnels.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
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
    let (target, rest) = match read_head(&mut stream).await {
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
    let mut upstream = None;
    for addr in addrs {
        if let Ok(Ok(connected)) =
            tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr)).await
        {
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
