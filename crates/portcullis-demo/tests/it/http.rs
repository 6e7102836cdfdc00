//! In-process `serve_http` driven by rmcp's streamable HTTP client.

use std::net::SocketAddr;

use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use tokio::{sync::oneshot, task::JoinHandle};

use crate::support::{Lifecycle, WAIT, call, connect, expect_progress, structured, text};

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// Binds first, so clients can connect without waiting or retrying.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(portcullis_demo::serve_http(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("graceful shutdown timed out")
            .unwrap()
            .expect("serve_http failed");
    }
}

#[tokio::test]
async fn http_list_contacts_with_either_lifecycle() {
    let server = Server::start().await;
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Discover] {
        let (client, _inbox) = connect(
            StreamableHttpClientTransport::from_uri(server.url()),
            lifecycle,
        )
        .await;
        let contacts = call(&client, "list_contacts", json!({})).await;
        let ids: Vec<_> = structured(&contacts)["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["c_1", "c_2", "c_3"], "{lifecycle:?}");
        client.cancel().await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn http_state_is_shared_across_connections() {
    let server = Server::start().await;
    let (writer, _) = connect(
        StreamableHttpClientTransport::from_uri(server.url()),
        Lifecycle::Initialize,
    )
    .await;
    let (reader, _) = connect(
        StreamableHttpClientTransport::from_uri(server.url()),
        Lifecycle::Discover,
    )
    .await;
    call(
        &writer,
        "update_contact",
        json!({ "id": "c_1", "email": "ada@new.example.com" }),
    )
    .await;
    let ada = call(&reader, "get_contact", json!({ "id": "c_1" })).await;
    assert_eq!(structured(&ada)["email"], "ada@new.example.com");
    writer.cancel().await.unwrap();
    reader.cancel().await.unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn http_count_to_delivers_progress_to_the_client() {
    let server = Server::start().await;
    for lifecycle in [Lifecycle::Initialize, Lifecycle::Discover] {
        let (client, mut inbox) = connect(
            StreamableHttpClientTransport::from_uri(server.url()),
            lifecycle,
        )
        .await;
        let done = call(&client, "count_to", json!({ "n": 4 })).await;
        assert_eq!(text(&done), "counted to 4");
        expect_progress(&mut inbox, 4).await;
        client.cancel().await.unwrap();
    }
    server.shutdown().await;
}
