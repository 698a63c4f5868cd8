//! TLS and mutual TLS over a real socket, with certificates made at run
//! time (a CA, a server certificate for localhost and 127.0.0.1, a client
//! certificate).

use std::process::Command;

use clusternet::service::server::ServerConfig;
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clusternet");

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca: ca.pem(),
        server: leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(vec!["analyst".into()], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn https(server: &TestServer) -> String {
    server.url().replacen("http://", "https://", 1)
}

async fn list_over(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    pb::network_service_client::NetworkServiceClient::new(channel)
        .list_clusters(pb::ListClustersRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_not_plaintext_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let config = ServerConfig {
        tls: Some(ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1))),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let trusting = Endpoint::from_shared(https(&server))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)))
        .unwrap();
    list_over(trusting).await.unwrap();
    let plaintext = Endpoint::from_shared(server.url()).unwrap();
    assert!(list_over(plaintext).await.is_err(), "plaintext must not get through");
    let untrusting = Endpoint::from_shared(https(&server))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.client.0.clone())))
        .unwrap();
    assert!(list_over(untrusting).await.is_err(), "a client must check the server");
    server.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let config = ServerConfig {
        tls: Some(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
                .client_ca_root(Certificate::from_pem(&pki.ca)),
        ),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(dir.path(), Default::default(), config).await;
    let client_tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca));
    let anonymous = Endpoint::from_shared(https(&server))
        .unwrap()
        .tls_config(client_tls.clone())
        .unwrap();
    assert!(list_over(anonymous).await.is_err(), "no client certificate, no call");
    let known = Endpoint::from_shared(https(&server))
        .unwrap()
        .tls_config(client_tls.identity(Identity::from_pem(&pki.client.0, &pki.client.1)))
        .unwrap();
    list_over(known).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_over_tls_with_the_ca_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let csv = tempfile::tempdir().unwrap();
    let pki = pki();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).unwrap();
    let config = ServerConfig {
        tls: Some(ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1))),
        ..ServerConfig::default()
    };
    let server = TestServer::start_configured(&dir.path().join("data"), Default::default(), config).await;
    std::fs::write(csv.path().join("clusters.csv"), "id,name\nc1,One\n").unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["import", "--server", &https(&server), "--ca"])
        .arg(&ca)
        .arg(csv.path());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(server.store().snapshot().network.clusters.contains_key("c1"));
    server.stop().await;
}

#[test]
fn serve_beyond_loopback_with_tls_but_no_tokens_is_refused_and_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without tokens (--tokens)"), "{stderr}");
}
