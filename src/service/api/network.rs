//! `clusternet.v1.NetworkService`: thin handlers that validate, call the
//! store, and convert.

use std::{collections::VecDeque, sync::Arc};

use tokio::sync::watch;
use tokio_stream::{
    wrappers::{ReceiverStream, UnboundedReceiverStream},
    Stream, StreamExt,
};
use tonic::{Request, Response, Status, Streaming};

use super::{
    change_feed::watch_changes,
    paging::{next_page_token, page_request},
};
use crate::service::{
    convert::{self, arc_rows},
    layers::auth::caller_role,
    pb::{self, network_service_server::NetworkService},
    runtime::feed::Watchers,
};
use crate::{
    auth::Role,
    error::Error,
    model::{validate_id, ActorKind, Change, Channel, ClusterLinkKey, ClusterLinkKind, Id, LinkKind, Segment},
    network::{query, ChangeCounts, EdgeKey},
    store::{PendingBatch, Sequence, Store},
};

pub struct NetworkApi {
    store: Arc<Store>,
    /// Turns true when the server shuts down, ending the change feeds.
    shutdown: watch::Receiver<bool>,
    watchers: Arc<Watchers>,
}

impl NetworkApi {
    pub fn new(store: Arc<Store>, shutdown: watch::Receiver<bool>, watchers: Arc<Watchers>) -> Self {
        NetworkApi {
            store,
            shutdown,
            watchers,
        }
    }
}

const MAX_NEIGHBORHOOD: usize = 10_000;
/// Batches of one import queued at the writer at once: enough for the writer
/// to commit several in one group (one copy of the network, one sync).
const PIPELINE: usize = 8;
const DEFAULT_NEIGHBORHOOD: usize = 1_000;

fn id_cursor(after: Option<Vec<u8>>) -> Result<Option<Id>, Error> {
    after
        .map(|bytes| {
            String::from_utf8(bytes)
                .map(Id::from)
                .map_err(|_| Error::invalid("page_token", "is not a token this server issued"))
        })
        .transpose()
}

/// Links and cluster links are keyed by (source, target, kind); their cursor
/// is `source NUL target NUL kind-number`.
fn pair_cursor(source: &str, target: &str, kind: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(source.len() + target.len() + 3);
    bytes.extend_from_slice(source.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(target.as_bytes());
    bytes.push(0);
    bytes.push(kind as u8);
    bytes
}

fn parse_pair_cursor<K: Copy>(bytes: &[u8], all: &[K]) -> Result<(Id, Id, K), Error> {
    let malformed = || Error::invalid("page_token", "is not a token this server issued");
    let mut parts = bytes.splitn(3, |b| *b == 0);
    let (Some(source), Some(target), Some(&[kind])) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let text = |part: &[u8]| std::str::from_utf8(part).map(Id::from).map_err(|_| malformed());
    let kind = *all.get(kind as usize).ok_or_else(malformed)?;
    Ok((text(source)?, text(target)?, kind))
}

/// A link cursor: source index, target index (big-endian u32) and kind number.
fn edge_cursor(key: &EdgeKey) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(9);
    bytes.extend_from_slice(&key.source.to_be_bytes());
    bytes.extend_from_slice(&key.target.to_be_bytes());
    bytes.push(position(LinkKind::ALL, &key.kind) as u8);
    bytes
}

fn parse_edge_cursor(bytes: &[u8]) -> Result<EdgeKey, Error> {
    let malformed = || Error::invalid("page_token", "is not a token this server issued");
    let [s0, s1, s2, s3, t0, t1, t2, t3, kind] = bytes else {
        return Err(malformed());
    };
    Ok(EdgeKey {
        source: u32::from_be_bytes([*s0, *s1, *s2, *s3]),
        target: u32::from_be_bytes([*t0, *t1, *t2, *t3]),
        kind: *LinkKind::ALL.get(*kind as usize).ok_or_else(malformed)?,
    })
}

fn position<T: PartialEq>(all: &[T], value: &T) -> usize {
    all.iter().position(|v| v == value).unwrap_or(0)
}

#[tonic::async_trait]
impl NetworkService for NetworkApi {
    type WatchChangesStream = ReceiverStream<Result<pb::WatchChangesResponse, Status>>;

    #[tracing::instrument(skip_all, fields(from = request.get_ref().from_revision))]
    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let client = crate::service::layers::auth::client_of(&request);
        let from = request.into_inner().from_revision;
        let watching = self.watchers.admit("changes", &client).await?;
        let stream = watch_changes(self.store.clone(), from, self.shutdown.clone(), watching).await?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(changes = request.get_ref().changes.len()))]
    async fn apply_changes(
        &self,
        request: Request<pb::ApplyChangesRequest>,
    ) -> Result<Response<pb::ApplyChangesResponse>, Status> {
        let role = caller_role(&request);
        let changes = convert::batch_from_pb(request.into_inner().changes)?;
        check_cascades(role, &changes)?;
        let applied = self.store.apply(changes).await?;
        Ok(Response::new(pb::ApplyChangesResponse {
            revision: applied.revision,
            counts: Some(convert::counts_to_pb(&applied.counts)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_changes(
        &self,
        request: Request<Streaming<pb::ImportChangesRequest>>,
    ) -> Result<Response<pb::ImportChangesResponse>, Status> {
        let role = caller_role(&request);
        let batches = request.into_inner().map(|batch| batch.map(|b| b.changes));
        let summary = import(self.store.clone(), self.shutdown.clone(), role, batches, |_| {}).await?;
        Ok(Response::new(summary))
    }

    type ImportBatchesStream = UnboundedReceiverStream<Result<pb::ImportBatchesResponse, Status>>;

    async fn import_batches(
        &self,
        request: Request<Streaming<pb::ImportBatchesRequest>>,
    ) -> Result<Response<Self::ImportBatchesStream>, Status> {
        let role = caller_role(&request);
        let batches = request.into_inner().map(|batch| batch.map(|b| b.changes));
        let (store, shutdown) = (self.store.clone(), self.shutdown.clone());
        // One acknowledgement (a few bytes) a batch the client sent: what
        // the client sends bounds them, so the channel need not push back.
        let (events, events_out) = tokio::sync::mpsc::unbounded_channel();
        let acks = events.clone();
        tokio::spawn(async move {
            let acknowledge = move |applied: pb::BatchApplied| {
                let _ = acks.send(Ok(pb::ImportBatchesResponse {
                    event: Some(pb::import_batches_response::Event::Applied(applied)),
                }));
            };
            let last = import(store, shutdown, role, batches, acknowledge)
                .await
                .map(|summary| pb::ImportBatchesResponse {
                    event: Some(pb::import_batches_response::Event::Summary(summary)),
                });
            let _ = events.send(last);
        });
        Ok(Response::new(UnboundedReceiverStream::new(events_out)))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn get_cluster(
        &self,
        request: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::GetClusterResponse>, Status> {
        let id = request.into_inner().id;
        validate_id("id", &id)?;
        let snapshot = self.store.snapshot();
        let cluster = snapshot
            .network
            .clusters
            .get(id.as_str())
            .ok_or_else(|| Error::not_found("id", "cluster", &id))?;
        Ok(Response::new(pb::GetClusterResponse {
            cluster: Some(convert::cluster_to_pb(cluster)),
            revision: snapshot.revision,
        }))
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn get_actor(&self, request: Request<pb::GetActorRequest>) -> Result<Response<pb::GetActorResponse>, Status> {
        let id = request.into_inner().id;
        validate_id("id", &id)?;
        let snapshot = self.store.snapshot();
        let actor = snapshot
            .network
            .actors
            .get(id.as_str())
            .ok_or_else(|| Error::not_found("id", "actor", &id))?;
        let profiles = snapshot.network.profiles.get(id.as_str());
        Ok(Response::new(pb::GetActorResponse {
            actor: Some(convert::actor_to_pb(actor)),
            revision: snapshot.revision,
            profiles: profiles
                .into_iter()
                .flat_map(|p| p.iter())
                .map(convert::profile_to_pb)
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_clusters(
        &self,
        request: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        let request = request.into_inner();
        let page = page_request(request.page_size, &request.page_token, "")?;
        let after = id_cursor(page.after)?;
        let snapshot = self.store.snapshot();
        let rows = query::clusters(&snapshot.network, after.as_ref(), page.size);
        let next_page_token = match (rows.more, rows.rows.last()) {
            (true, Some(last)) => next_page_token("", last.id.as_bytes()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListClustersResponse {
            clusters: arc_rows(&rows.rows, convert::cluster_to_pb),
            next_page_token,
            revision: snapshot.revision,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_actors(
        &self,
        request: Request<pb::ListActorsRequest>,
    ) -> Result<Response<pb::ListActorsResponse>, Status> {
        let request = request.into_inner();
        let filter = query::ActorFilter {
            cluster: (!request.cluster_id.is_empty()).then(|| Id::from(request.cluster_id.as_str())),
            kind: convert::optional_enum(ActorKind::ALL, request.kind, "kind", "ActorKind")?,
            segment: convert::optional_enum(Segment::ALL, request.segment, "segment", "Segment")?,
        };
        let filters = format!("{}\0{}\0{}", request.cluster_id, request.kind, request.segment);
        let page = page_request(request.page_size, &request.page_token, &filters)?;
        let after = id_cursor(page.after)?;
        let snapshot = self.store.snapshot();
        if let Some(cluster) = &filter.cluster {
            if !snapshot.network.clusters.contains_key(cluster) {
                return Err(Error::not_found("cluster_id", "cluster", &**cluster).into());
            }
        }
        let rows = query::actors(&snapshot.network, &filter, after.as_ref(), page.size);
        let next_page_token = match (rows.more, rows.rows.last()) {
            (true, Some(last)) => next_page_token(&filters, last.id.as_bytes()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListActorsResponse {
            actors: arc_rows(&rows.rows, convert::actor_to_pb),
            next_page_token,
            revision: snapshot.revision,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        let request = request.into_inner();
        let kind = convert::optional_enum(LinkKind::ALL, request.kind, "kind", "LinkKind")?;
        let channel = convert::optional_enum(Channel::ALL, request.channel, "channel", "Channel")?;
        let filters = format!("{}\0{}\0{}", request.actor_id, request.kind, request.channel);
        let page = page_request(request.page_size, &request.page_token, &filters)?;
        let after = page.after.map(|bytes| parse_edge_cursor(&bytes)).transpose()?;
        let snapshot = self.store.snapshot();
        let actor = match request.actor_id.as_str() {
            "" => None,
            id => Some(
                snapshot
                    .network
                    .ix_of(id)
                    .ok_or_else(|| Error::not_found("actor_id", "actor", id))?,
            ),
        };
        let filter = query::LinkFilter { actor, kind, channel };
        let (rows, more) = query::links(&snapshot.network, &filter, after.as_ref(), page.size);
        let next_page_token = match (more, rows.last()) {
            (true, Some((key, _))) => next_page_token(&filters, &edge_cursor(key)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListLinksResponse {
            links: rows.iter().map(|(_, link)| convert::link_to_pb(link)).collect(),
            next_page_token,
            revision: snapshot.revision,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_cluster_links(
        &self,
        request: Request<pb::ListClusterLinksRequest>,
    ) -> Result<Response<pb::ListClusterLinksResponse>, Status> {
        let request = request.into_inner();
        let filters = request.endpoint.clone();
        let page = page_request(request.page_size, &request.page_token, &filters)?;
        let after = page
            .after
            .map(|bytes| parse_pair_cursor(&bytes, ClusterLinkKind::ALL))
            .transpose()?
            .map(|(source, target, kind)| ClusterLinkKey { source, target, kind });
        let endpoint = (!request.endpoint.is_empty()).then(|| Id::from(request.endpoint.as_str()));
        let snapshot = self.store.snapshot();
        if let Some(end) = &endpoint {
            if !snapshot.network.clusters.contains_key(end) && !snapshot.network.sites.contains_key(end) {
                return Err(Error::not_found("endpoint", "cluster or site", &**end).into());
            }
        }
        let rows = query::cluster_links(&snapshot.network, endpoint.as_ref(), after.as_ref(), page.size);
        let next_page_token = match (rows.more, rows.rows.last()) {
            (true, Some(last)) => next_page_token(
                &filters,
                &pair_cursor(&last.source, &last.target, position(ClusterLinkKind::ALL, &last.kind)),
            ),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListClusterLinksResponse {
            cluster_links: arc_rows(&rows.rows, convert::cluster_link_to_pb),
            next_page_token,
            revision: snapshot.revision,
        }))
    }

    #[tracing::instrument(skip_all, fields(actor = %request.get_ref().actor_id))]
    async fn get_neighborhood(
        &self,
        request: Request<pb::GetNeighborhoodRequest>,
    ) -> Result<Response<pb::GetNeighborhoodResponse>, Status> {
        let request = request.into_inner();
        validate_id("actor_id", &request.actor_id)?;
        let depth = match request.depth {
            0 => 1,
            d @ 1..=3 => d as u32,
            d => return Err(Error::invalid("depth", format!("{d} is outside 1..3")).into()),
        };
        let max_actors = match request.max_actors {
            0 => DEFAULT_NEIGHBORHOOD,
            n if n < 0 || n as usize > MAX_NEIGHBORHOOD => {
                return Err(Error::invalid("max_actors", format!("{n} is outside 1..{MAX_NEIGHBORHOOD}")).into());
            }
            n => n as usize,
        };
        let kinds = request
            .kinds
            .iter()
            .enumerate()
            .map(|(i, k)| convert::link_kind(*k, &format!("kinds[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let snapshot = self.store.snapshot();
        let found = query::neighborhood(&snapshot.network, &request.actor_id, depth, &kinds, max_actors)
            .ok_or_else(|| Error::not_found("actor_id", "actor", &request.actor_id))?;
        Ok(Response::new(pb::GetNeighborhoodResponse {
            hops: found.actors.iter().map(|(_, hops)| *hops as i32).collect(),
            actors: found
                .actors
                .iter()
                .map(|(actor, _)| convert::actor_to_pb(actor))
                .collect(),
            links: found.links.iter().map(convert::link_to_pb).collect(),
            truncated: found.truncated,
            revision: snapshot.revision,
        }))
    }
}

/// Cascade deletes remove everything that hangs off an entity: with tokens
/// checked, they need an admin token.
fn check_cascades(role: Option<Role>, changes: &[Change]) -> Result<(), Error> {
    let Some(role) = role.filter(|r| *r < Role::Admin) else {
        return Ok(());
    };
    for (i, change) in changes.iter().enumerate() {
        if matches!(
            change,
            Change::DeleteActor { cascade: true, .. } | Change::DeleteCluster { cascade: true, .. }
        ) {
            return Err(Error::PermissionDenied {
                field: format!("changes[{i}].{}.cascade", change.field_name()),
                message: format!("a {role} token may not delete with cascade: it needs admin"),
            });
        }
    }
    Ok(())
}

/// What an import has applied so far.
struct Tally<A: FnMut(pb::BatchApplied)> {
    batches: u64,
    revision: u64,
    counts: ChangeCounts,
    acknowledge: A,
}

impl<A: FnMut(pb::BatchApplied)> Tally<A> {
    /// Waits for a submitted batch to land: counted and acknowledged, or
    /// its failure said with what landed before it.
    async fn land(&mut self, pending: PendingBatch) -> Result<(), Status> {
        let done = pending.outcome().await.map_err(|e| self.fail(e.into()))?;
        self.batches += 1;
        self.revision = done.revision;
        self.counts.add(&done.counts);
        (self.acknowledge)(pb::BatchApplied {
            batch: self.batches,
            revision: self.revision,
        });
        Ok(())
    }

    /// A failure of the next batch, with what was applied before it. The
    /// details (the field, the retry delay) stay as they were.
    fn fail(&self, status: Status) -> Status {
        let message = format!(
            "batch {} (after {} applied batches, revision {}): {}",
            self.batches + 1,
            self.batches,
            self.revision,
            status.message()
        );
        crate::service::status::retold(&status, message)
    }
}

/// The import loop both import calls share: each batch of `stream` is
/// submitted as it arrives (up to PIPELINE queued at the writer while the
/// next is received and decoded; a shared `Sequence` stops the queue at a
/// failure), `acknowledge` is told of each once durable, and the summary
/// comes when the stream ends. A refused batch ends it with a status naming
/// the batch and what was applied before it.
async fn import(
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
    role: Option<Role>,
    mut stream: impl Stream<Item = Result<Vec<pb::Change>, Status>> + Unpin,
    acknowledge: impl FnMut(pb::BatchApplied),
) -> Result<pb::ImportChangesResponse, Status> {
    let mut tally = Tally {
        batches: 0,
        revision: store.snapshot().revision,
        counts: ChangeCounts::default(),
        acknowledge,
    };
    let sequence = Sequence::default();
    let mut in_flight: VecDeque<PendingBatch> = VecDeque::new();
    let mut ended = false;
    loop {
        // Keep the pipeline full while the stream has batches.
        while !ended && in_flight.len() < PIPELINE {
            // An idle import must not hold the server's shutdown open:
            // it ends with UNAVAILABLE once the batches in flight land.
            let next = tokio::select! {
                next = stream.next() => next,
                // The guard wait_for returns is dropped inside: it is not Send.
                _ = async { shutdown.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    for pending in in_flight.drain(..) {
                        tally.land(pending).await?;
                    }
                    return Err(crate::service::status::stopping(format!(
                        "the server is shutting down; {} batches were applied (revision {}): \
                         send the rest again once it is back",
                        tally.batches, tally.revision
                    )));
                }
            };
            let submitted = match next {
                None => {
                    ended = true;
                    break;
                }
                Some(Ok(batch)) => {
                    match convert::batch_from_pb(batch).and_then(|c| check_cascades(role, &c).map(|_| c)) {
                        Ok(changes) => store
                            .submit(changes, Some(sequence.clone()))
                            .await
                            .map_err(Status::from),
                        Err(error) => Err(error.into()),
                    }
                }
                // A message too large or not protobuf, said as the rest
                // of the server says it.
                Some(Err(status)) => Err(crate::service::status::from_decoder(&status).unwrap_or(status)),
            };
            match submitted {
                Ok(pending) => in_flight.push_back(pending),
                Err(status) => {
                    // The batches queued before this one still land.
                    for pending in in_flight.drain(..) {
                        tally.land(pending).await?;
                    }
                    return Err(tally.fail(status));
                }
            }
        }
        let Some(pending) = in_flight.pop_front() else {
            break;
        };
        tally.land(pending).await?;
    }
    Ok(pb::ImportChangesResponse {
        batches: tally.batches,
        counts: Some(convert::counts_to_pb(&tally.counts)),
        revision: tally.revision,
    })
}
