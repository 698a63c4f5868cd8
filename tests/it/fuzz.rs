//! Every method, fed bytes it did not expect: mutated encodings of valid
//! requests and plain noise, sent raw over a real socket. Whatever decodes
//! must be validated; the answer is always one of the documented codes,
//! never INTERNAL or UNKNOWN, and the server keeps serving.

use std::time::Duration;

use bytes::{Buf, BufMut};
use clusternet::service::{pb, server::ServerConfig};
use proptest::prelude::*;
use prost::Message;
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    Code, Status,
};

use crate::common::TestServer;

/// Passes message bytes through untouched, both ways.
#[derive(Clone, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining()).to_vec();
        Ok(Some(bytes))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// A method as the descriptor set describes it.
#[derive(Clone, Debug)]
struct Method {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

fn methods() -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "clusternet.v1") {
        for service in &file.service {
            for method in &service.method {
                methods.push(Method {
                    path: format!("/clusternet.v1.{}/{}", service.name(), method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    methods
}

/// Valid requests to start from: ones that name what the demo holds.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        pb::GetActorRequest { id: "faw".into() }.encode_to_vec(),
        pb::CentralityRequest {
            measure: pb::CentralityMeasure::Pagerank as i32,
            top_k: 5,
            ..Default::default()
        }
        .encode_to_vec(),
        pb::ClusterOverlapRequest {
            cluster_a: "changning-creative".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        pb::ListLinksRequest {
            page_size: 3,
            ..Default::default()
        }
        .encode_to_vec(),
    ]
}

/// What any method may answer to a bad request, as documented.
const DOCUMENTED: [Code; 9] = [
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
    Code::Cancelled,
    Code::Unimplemented,
];

/// Sends `message` to `method`; the code it ends with (a live watch that
/// is still open after a moment counts as OK).
async fn call(channel: tonic::transport::Channel, method: &Method, message: Vec<u8>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
    let path: http::uri::PathAndQuery = method.path.parse().unwrap();
    if method.client_streaming {
        let mut request = tonic::Request::new(tokio_stream::iter(vec![message]));
        request.set_timeout(Duration::from_secs(10));
        grpc.client_streaming(request, path, Raw).await.map(|_| ())
    } else if method.server_streaming {
        let mut request = tonic::Request::new(message);
        request.set_timeout(Duration::from_secs(10));
        let mut stream = grpc.server_streaming(request, path, Raw).await?.into_inner();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                Err(_) => return Ok(()), // a live feed, still open
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(status)) => return Err(status),
            }
        }
    } else {
        let mut request = tonic::Request::new(message);
        request.set_timeout(Duration::from_secs(10));
        grpc.unary(request, path, Raw).await.map(|_| ())
    }
}

/// A mutation of a seed: bytes flipped, cut, or inserted.
fn mutated() -> impl Strategy<Value = (usize, Vec<(u8, usize, u8)>, Option<usize>)> {
    (
        0..seeds().len(),
        prop::collection::vec((0u8..3, any::<usize>(), any::<u8>()), 0..12),
        prop::option::of(any::<usize>()),
    )
}

fn apply_mutation(seed: &[u8], edits: &[(u8, usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(op, at, value) in edits {
        let at = if bytes.is_empty() { 0 } else { at % (bytes.len() + 1) };
        match op {
            0 if at < bytes.len() => bytes[at] ^= value.max(1),
            1 => bytes.insert(at.min(bytes.len()), value),
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.push(value),
        }
    }
    if let Some(cut) = cut {
        let len = bytes.len();
        bytes.truncate(cut % (len + 1));
    }
    bytes
}

#[test]
fn every_method_answers_mangled_requests_with_a_documented_code_and_keeps_serving() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = runtime.block_on(TestServer::start_demo(dir.path(), ServerConfig::default()));
    let channel = runtime.block_on(server.channel());
    let methods = methods();
    assert!(methods.len() >= 25, "{} methods", methods.len());
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    for method in &methods {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let noise = prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| (0usize, vec![], None, Some(b)));
        let edits = mutated().prop_map(|(s, e, c)| (s, e, c, None));
        let result = runner.run(&prop_oneof![edits, noise], |(seed, edits, cut, noise)| {
            let message = noise.unwrap_or_else(|| apply_mutation(&seeds()[seed], &edits, cut));
            let outcome = runtime.block_on(call(channel.clone(), method, message.clone()));
            if let Err(status) = outcome {
                prop_assert!(
                    DOCUMENTED.contains(&status.code()),
                    "{} answered {:?} to {:?}: {}",
                    method.path,
                    status.code(),
                    message,
                    status.message()
                );
                prop_assert!(status.message().len() <= 1_100, "an uncapped message");
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
    // Still serving.
    runtime.block_on(async {
        let mut client = server.client().await;
        client
            .list_actors(pb::ListActorsRequest::default())
            .await
            .expect("the server still answers");
        server.stop().await;
    });
}
