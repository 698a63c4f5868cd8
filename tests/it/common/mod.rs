//! A real server on 127.0.0.1:0 with its store in a directory the test owns,
//! and helpers to build requests and check statuses.

pub use clusternet::service::pb;
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use clusternet::{
    alert::{engine::AlertEngine, log::AlertLog},
    service::{
        pb::network_service_client::NetworkServiceClient,
        server::{serve, ServerConfig},
    },
    store::{SledConfig, Store, StoreConfig},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::{transport::Channel, Code, Status};

pub struct TestServer {
    pub addr: SocketAddr,
    store: Arc<Store>,
    alerts: Arc<AlertEngine>,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(dir: &Path) -> TestServer {
        TestServer::start_with(dir, StoreConfig::default()).await
    }

    pub async fn start_with(dir: &Path, config: StoreConfig) -> TestServer {
        TestServer::start_configured(dir, config, ServerConfig::default()).await
    }

    /// A server with the demo networks loaded.
    /// As `clusternet serve --demo` starts: the demo is loaded before the
    /// alert engine starts, so it is the engine's baseline, not a change.
    pub async fn start_demo(dir: &Path, server: ServerConfig) -> TestServer {
        let store =
            Arc::new(Store::open_sled(dir, &SledConfig::default(), StoreConfig::default()).expect("store opens"));
        assert!(clusternet::demo::load_if_empty(&store).await.unwrap());
        TestServer::serve_store(dir, store, server).await
    }

    pub async fn start_configured(dir: &Path, config: StoreConfig, server: ServerConfig) -> TestServer {
        let store = Arc::new(Store::open_sled(dir, &SledConfig::default(), config).expect("store opens"));
        TestServer::serve_store(dir, store, server).await
    }

    async fn serve_store(dir: &Path, store: Arc<Store>, server: ServerConfig) -> TestServer {
        let log = AlertLog::open(&dir.join("alerts")).expect("alert log opens");
        let alerts = AlertEngine::start(store.clone(), log, server.stage.clone(), None).expect("alert engine starts");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let serving = tokio::spawn(serve(store.clone(), Some(alerts.clone()), server, listener, async {
            let _ = signal.await;
        }));
        let serving = tokio::spawn(async move { serving.await.unwrap().expect("server runs") });
        TestServer {
            addr,
            store,
            alerts,
            shutdown: Some(shutdown),
            serving: Some(serving),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }

    pub async fn client(&self) -> NetworkServiceClient<Channel> {
        NetworkServiceClient::new(self.channel().await)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn shared_store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Shuts down gracefully and closes the store, releasing its directory.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap();
        }
        // Connection tasks drop their handles to the services shortly after
        // the server stops; the store's lock is released with the last one.
        // The alert thread holds one more until it is closed, after the store.
        for _ in 0..200 {
            if Arc::strong_count(&self.store) <= 2 && Arc::strong_count(&self.alerts) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.store.close();
        self.alerts.close();
    }
}

pub fn site(id: &str, lat: f64, lon: f64) -> pb::Site {
    pb::Site {
        id: id.into(),
        name: format!("Site {id}"),
        lat,
        lon,
    }
}

pub fn cluster(id: &str, sites: Vec<pb::Site>) -> pb::Cluster {
    pb::Cluster {
        id: id.into(),
        name: format!("Cluster {id}"),
        region: "Shanghai, CN".into(),
        country: "CN".into(),
        industry: "M7410".into(),
        sites,
    }
}

pub fn actor(id: &str, clusters: &[&str]) -> pb::Actor {
    pb::Actor {
        id: id.into(),
        name: format!("Actor {id}"),
        kind: pb::ActorKind::Firm as i32,
        industry: "C2930".into(),
        segments: vec![pb::Segment::Manufacturing as i32],
        cluster_ids: clusters.iter().map(|c| c.to_string()).collect(),
        country: "CN".into(),
        ..Default::default()
    }
}

pub fn link(source: &str, target: &str, kind: pb::LinkKind) -> pb::Link {
    pb::Link {
        source: source.into(),
        target: target.into(),
        kind: kind as i32,
        channel: pb::Channel::Physical as i32,
        weight: 1.0,
        ..Default::default()
    }
}

pub fn upsert_cluster(c: pb::Cluster) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::UpsertCluster(c)),
    }
}

pub fn upsert_actor(a: pb::Actor) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::UpsertActor(a)),
    }
}

pub fn upsert_link(l: pb::Link) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::UpsertLink(l)),
    }
}

pub fn delete_link(source: &str, target: &str, kind: pb::LinkKind) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::DeleteLink(pb::LinkKey {
            source: source.into(),
            target: target.into(),
            kind: kind as i32,
        })),
    }
}

pub fn upsert_cluster_link(l: pb::ClusterLink) -> pb::Change {
    pb::Change {
        change: Some(pb::change::Change::UpsertClusterLink(l)),
    }
}

pub fn batch(changes: Vec<pb::Change>) -> pb::ApplyChangesRequest {
    pb::ApplyChangesRequest { changes }
}

/// Asserts a call failed with `code` and a message naming `field`.
pub fn assert_status<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, field: &str) {
    let status = result.expect_err("the call should fail");
    assert_eq!(status.code(), code, "wrong code for {field}: {}", status.message());
    assert!(
        status.message().contains(field),
        "message should name {field}: {}",
        status.message()
    );
}

pub type Client = NetworkServiceClient<Channel>;

/// Every actor a listing yields, following page tokens to the end; checks no
/// page is larger than asked.
pub async fn all_actors(client: &mut Client, mut request: pb::ListActorsRequest) -> Vec<pb::Actor> {
    let mut rows = Vec::new();
    loop {
        let page = client.list_actors(request.clone()).await.unwrap().into_inner();
        assert!(request.page_size == 0 || page.actors.len() <= request.page_size as usize);
        rows.extend(page.actors);
        if page.next_page_token.is_empty() {
            return rows;
        }
        request.page_token = page.next_page_token;
    }
}

/// Every link a listing yields, following page tokens to the end.
pub async fn all_links(client: &mut Client, mut request: pb::ListLinksRequest) -> Vec<pb::Link> {
    let mut rows = Vec::new();
    loop {
        let page = client.list_links(request.clone()).await.unwrap().into_inner();
        assert!(request.page_size == 0 || page.links.len() <= request.page_size as usize);
        rows.extend(page.links);
        if page.next_page_token.is_empty() {
            return rows;
        }
        request.page_token = page.next_page_token;
    }
}

/// Loads a generated network (`clusternet::synthetic`) straight into the
/// store, in batches of 10,000 changes.
pub async fn load_synthetic(server: &TestServer, config: clusternet::synthetic::SyntheticConfig) {
    let changes = clusternet::synthetic::generate(&config);
    for chunk in changes.chunks(10_000) {
        server.store().apply(chunk.to_vec()).await.unwrap();
    }
}
