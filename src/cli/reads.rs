//! A subcommand per read (lists page through to the end) and the two
//! watches, which print rows as they come until interrupted.

use clap::{Args, Subcommand};

use super::{
    output::{written, Cell, OutputArgs, Printer, Record},
    server_error, ClientArgs,
};
use crate::{
    cli::client::Connection,
    model::{ActorKind, LinkKind},
    service::{convert::wire, pb, pb::alert_service_client::AlertServiceClient},
};

#[derive(Subcommand, Debug)]
pub enum ReadCommand {
    /// Every cluster, with its sites.
    Clusters(Plain),
    /// One cluster.
    Cluster(ById),
    /// Actors, optionally of one cluster or kind.
    Actors(ActorsArgs),
    /// One actor and its earlier profiles.
    Actor(ById),
    /// Links, optionally of one actor or kind.
    Links(LinksArgs),
    /// Explicit links between clusters or sites.
    ClusterLinks(ClusterLinksArgs),
    /// The actors within a few hops of one actor.
    Neighborhood(NeighborhoodArgs),
    /// The alerts kept, oldest first.
    Alerts(AlertsArgs),
    /// The alert rules in force.
    AlertRules(Plain),
    /// Follows changes or alerts as they happen (Ctrl-C stops).
    #[command(subcommand)]
    Watch(WatchCommand),
}

#[derive(Subcommand, Debug)]
pub enum WatchCommand {
    /// Applied batches, one row per change.
    Changes(WatchArgs),
    /// Alerts, one row each.
    Alerts(WatchArgs),
}

#[derive(Args, Debug)]
pub struct Plain {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ById {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    id: String,
}

#[derive(Args, Debug)]
pub struct ActorsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    #[arg(long)]
    cluster: Option<String>,
    #[arg(long, value_parser = |s: &str| s.parse::<ActorKind>())]
    kind: Option<ActorKind>,
}

#[derive(Args, Debug)]
pub struct LinksArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Links from or to this actor.
    #[arg(long)]
    actor: Option<String>,
    #[arg(long, value_parser = |s: &str| s.parse::<LinkKind>())]
    kind: Option<LinkKind>,
}

#[derive(Args, Debug)]
pub struct ClusterLinksArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Links from or to this cluster or site.
    #[arg(long)]
    endpoint: Option<String>,
}

#[derive(Args, Debug)]
pub struct NeighborhoodArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    actor: String,
    #[arg(long, default_value_t = 1)]
    depth: i32,
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Alerts from this sequence number on.
    #[arg(long, default_value_t = 0)]
    from: u64,
    #[arg(long = "cluster")]
    clusters: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Start from this revision (changes) or sequence number (alerts), so a
    /// follower that stopped resumes without a gap; live only when absent.
    #[arg(long)]
    from: Option<u64>,
}

fn name<E: Copy>(
    value: i32,
    parse: impl Fn(i32) -> Option<E>,
    text: impl Fn(E) -> &'static str,
    prefix: &str,
) -> String {
    parse(value).map_or("?", text).trim_start_matches(prefix).to_string()
}

fn actor_kind(value: i32) -> String {
    name(
        value,
        |v| pb::ActorKind::try_from(v).ok(),
        |k| k.as_str_name(),
        "ACTOR_KIND_",
    )
}

fn link_kind(value: i32) -> String {
    name(
        value,
        |v| pb::LinkKind::try_from(v).ok(),
        |k| k.as_str_name(),
        "LINK_KIND_",
    )
}

fn channel(value: i32) -> String {
    name(
        value,
        |v| pb::Channel::try_from(v).ok(),
        |k| k.as_str_name(),
        "CHANNEL_",
    )
}

fn cluster_row(c: pb::Cluster) -> Record {
    let sites: Vec<&str> = c.sites.iter().map(|s| s.id.as_str()).collect();
    vec![
        ("id", c.id.clone().into()),
        ("name", c.name.clone().into()),
        ("region", c.region.clone().into()),
        ("industry", c.industry.clone().into()),
        ("country", c.country.clone().into()),
        ("sites", Cell::list(&sites)),
    ]
}

fn actor_row(a: pb::Actor) -> Record {
    vec![
        ("id", a.id.clone().into()),
        ("name", a.name.clone().into()),
        ("kind", actor_kind(a.kind).into()),
        ("industry", a.industry.clone().into()),
        ("clusters", Cell::list(&a.cluster_ids)),
        ("site_id", a.site_id.clone().into()),
        ("country", a.country.clone().into()),
        ("employees", a.employees.into()),
    ]
}

fn link_row(l: pb::Link) -> Record {
    vec![
        ("source", l.source.into()),
        ("target", l.target.into()),
        ("kind", link_kind(l.kind).into()),
        ("channel", channel(l.channel).into()),
        ("weight", l.weight.into()),
        ("valid_from", l.valid_from.into()),
        ("valid_to", l.valid_to.into()),
    ]
}

fn alert_row(a: pb::Alert) -> Record {
    let kind = name(
        a.kind,
        |v| pb::AlertKind::try_from(v).ok(),
        |k| k.as_str_name(),
        "ALERT_KIND_",
    );
    let severity = name(
        a.severity,
        |v| pb::Severity::try_from(v).ok(),
        |k| k.as_str_name(),
        "SEVERITY_",
    );
    vec![
        ("sequence", a.sequence.into()),
        ("revision", a.revision.into()),
        ("kind", kind.into()),
        ("severity", severity.into()),
        ("clusters", Cell::list(&a.cluster_ids)),
        ("actors", Cell::list(&a.actor_ids)),
        ("message", a.message.into()),
    ]
}

/// The change's kind and what it names.
fn change_row(revision: u64, change: pb::Change) -> Record {
    use pb::change::Change as C;
    let (kind, id): (&str, String) = match change.change {
        Some(C::UpsertCluster(c)) => ("upsert_cluster", c.id),
        Some(C::UpsertActor(a)) => ("upsert_actor", a.id),
        Some(C::UpsertLink(l)) => (
            "upsert_link",
            format!("{} -> {} ({})", l.source, l.target, link_kind(l.kind)),
        ),
        Some(C::UpsertClusterLink(l)) => ("upsert_cluster_link", format!("{} -> {}", l.source, l.target)),
        Some(C::DeleteCluster(d)) => ("delete_cluster", d.id),
        Some(C::DeleteActor(d)) => ("delete_actor", d.id),
        Some(C::DeleteLink(k)) => (
            "delete_link",
            format!("{} -> {} ({})", k.source, k.target, link_kind(k.kind)),
        ),
        Some(C::DeleteClusterLink(k)) => ("delete_cluster_link", format!("{} -> {}", k.source, k.target)),
        Some(C::UpsertActorProfile(p)) => ("upsert_actor_profile", format!("{} until {}", p.actor_id, p.until)),
        Some(C::DeleteActorProfile(p)) => ("delete_actor_profile", format!("{} until {}", p.actor_id, p.until)),
        None => ("empty", String::new()),
    };
    vec![
        ("revision", revision.into()),
        ("change", kind.into()),
        ("subject", id.into()),
    ]
}

fn print(output: OutputArgs, rows: impl IntoIterator<Item = Record>) -> Result<(), String> {
    let mut printer = Printer::new(output.style());
    for row in rows {
        printer.row(row).or_else(written)?;
    }
    printer.finish().or_else(written)
}

/// Pages through a listing: `call(token)` returns a page and the next token.
async fn all_pages<T, F, Fut>(mut call: F) -> Result<Vec<T>, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = call(token).await.map_err(|s| server_error(&s))?;
        items.extend(page);
        if next.is_empty() {
            return Ok(items);
        }
        token = next;
    }
}

const PAGE: i32 = 1_000;

impl ReadCommand {
    pub async fn run(self) -> Result<(), String> {
        match self {
            ReadCommand::Clusters(a) => {
                let client = a.client.connect().await?.network();
                let clusters = all_pages(|page_token| {
                    let mut client = client.clone();
                    async move {
                        let r = client
                            .list_clusters(pb::ListClustersRequest {
                                page_size: PAGE,
                                page_token,
                            })
                            .await?
                            .into_inner();
                        Ok((r.clusters, r.next_page_token))
                    }
                })
                .await?;
                print(a.output, clusters.into_iter().map(cluster_row))
            }
            ReadCommand::Cluster(a) => {
                let mut client = a.client.connect().await?.network();
                let reply = client
                    .get_cluster(pb::GetClusterRequest { id: a.id })
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner();
                print(a.output, reply.cluster.into_iter().map(cluster_row))
            }
            ReadCommand::Actors(a) => {
                let client = a.client.connect().await?.network();
                let (cluster_id, kind) = (
                    a.cluster.unwrap_or_default(),
                    a.kind.map_or(0, |k| wire(ActorKind::ALL, k)),
                );
                let actors = all_pages(|page_token| {
                    let mut client = client.clone();
                    let cluster_id = cluster_id.clone();
                    async move {
                        let r = client
                            .list_actors(pb::ListActorsRequest {
                                page_size: PAGE,
                                page_token,
                                cluster_id,
                                kind,
                                ..Default::default()
                            })
                            .await?
                            .into_inner();
                        Ok((r.actors, r.next_page_token))
                    }
                })
                .await?;
                print(a.output, actors.into_iter().map(actor_row))
            }
            ReadCommand::Actor(a) => {
                let mut client = a.client.connect().await?.network();
                let reply = client
                    .get_actor(pb::GetActorRequest { id: a.id })
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner();
                print(a.output, reply.actor.into_iter().map(actor_row))?;
                for p in reply.profiles {
                    eprintln!(
                        "until {}: industry {}, employees {:?}",
                        p.until, p.industry, p.employees
                    );
                }
                Ok(())
            }
            ReadCommand::Links(a) => {
                let client = a.client.connect().await?.network();
                let (actor_id, kind) = (
                    a.actor.unwrap_or_default(),
                    a.kind.map_or(0, |k| wire(LinkKind::ALL, k)),
                );
                let links = all_pages(|page_token| {
                    let mut client = client.clone();
                    let actor_id = actor_id.clone();
                    async move {
                        let r = client
                            .list_links(pb::ListLinksRequest {
                                page_size: PAGE,
                                page_token,
                                actor_id,
                                kind,
                                ..Default::default()
                            })
                            .await?
                            .into_inner();
                        Ok((r.links, r.next_page_token))
                    }
                })
                .await?;
                print(a.output, links.into_iter().map(link_row))
            }
            ReadCommand::ClusterLinks(a) => {
                let client = a.client.connect().await?.network();
                let endpoint = a.endpoint.unwrap_or_default();
                let links = all_pages(|page_token| {
                    let mut client = client.clone();
                    let endpoint = endpoint.clone();
                    async move {
                        let r = client
                            .list_cluster_links(pb::ListClusterLinksRequest {
                                page_size: PAGE,
                                page_token,
                                endpoint,
                            })
                            .await?
                            .into_inner();
                        Ok((r.cluster_links, r.next_page_token))
                    }
                })
                .await?;
                let rows = links.into_iter().map(|l| {
                    let kind = name(
                        l.kind,
                        |v| pb::ClusterLinkKind::try_from(v).ok(),
                        |k| k.as_str_name(),
                        "CLUSTER_LINK_KIND_",
                    );
                    vec![
                        ("source", l.source.into()),
                        ("target", l.target.into()),
                        ("kind", kind.into()),
                        ("channel", channel(l.channel).into()),
                        ("weight", l.weight.into()),
                    ]
                });
                print(a.output, rows)
            }
            ReadCommand::Neighborhood(a) => {
                let mut client = a.client.connect().await?.network();
                let reply = client
                    .get_neighborhood(pb::GetNeighborhoodRequest {
                        actor_id: a.actor,
                        depth: a.depth,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner();
                let rows = reply.actors.into_iter().zip(reply.hops).map(|(actor, hops)| {
                    let mut row = vec![("hops", Cell::from(hops))];
                    row.extend(actor_row(actor));
                    row
                });
                print(a.output, rows)?;
                if reply.truncated {
                    eprintln!("(truncated: more actors lie within {} hops)", a.depth);
                }
                Ok(())
            }
            ReadCommand::Alerts(a) => {
                let connection = a.client.connect().await?;
                let client = alerts(&connection);
                let clusters = a.clusters.clone();
                let alerts = all_pages(|page_token| {
                    let mut client = client.clone();
                    let cluster_ids = clusters.clone();
                    async move {
                        let r = client
                            .list_alerts(pb::ListAlertsRequest {
                                page_size: PAGE,
                                page_token,
                                cluster_ids,
                                from_sequence: a.from,
                                ..Default::default()
                            })
                            .await?
                            .into_inner();
                        Ok((r.alerts, r.next_page_token))
                    }
                })
                .await?;
                print(a.output, alerts.into_iter().map(alert_row))
            }
            ReadCommand::AlertRules(a) => {
                let connection = a.client.connect().await?;
                let rules = alerts(&connection)
                    .get_alert_rules(pb::GetAlertRulesRequest {})
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner()
                    .rules
                    .unwrap_or_default();
                let disabled: Vec<String> = rules
                    .disabled_kinds
                    .iter()
                    .map(|k| {
                        name(
                            *k,
                            |v| pb::AlertKind::try_from(v).ok(),
                            |k| k.as_str_name(),
                            "ALERT_KIND_",
                        )
                    })
                    .collect();
                print(
                    a.output,
                    [vec![
                        ("centrality_top_k", rules.centrality_top_k.into()),
                        ("centrality_rank_move", rules.centrality_rank_move.into()),
                        ("overlap_threshold", rules.overlap_threshold.into()),
                        ("min_substitute_score", rules.min_substitute_score.into()),
                        ("disabled_kinds", Cell::list(&disabled)),
                        ("eci_shift", rules.eci_shift.into()),
                    ]],
                )
            }
            ReadCommand::Watch(WatchCommand::Changes(a)) => {
                let mut client = a.client.connect().await?.network();
                let mut stream = client
                    .watch_changes(pb::WatchChangesRequest {
                        from_revision: a.from.unwrap_or(0),
                    })
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner();
                let mut printer = Printer::new(follow_style(a.output));
                while let Some(batch) = stream.message().await.map_err(|s| server_error(&s))? {
                    for change in batch.changes {
                        printer.row(change_row(batch.revision, change)).or_else(written)?;
                    }
                }
                printer.finish().or_else(written)
            }
            ReadCommand::Watch(WatchCommand::Alerts(a)) => {
                let connection = a.client.connect().await?;
                let mut stream = alerts(&connection)
                    .watch_alerts(pb::WatchAlertsRequest {
                        from_sequence: a.from.unwrap_or(0),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| server_error(&s))?
                    .into_inner();
                let mut printer = Printer::new(follow_style(a.output));
                while let Some(message) = stream.message().await.map_err(|s| server_error(&s))? {
                    if let Some(alert) = message.alert {
                        printer.row(alert_row(alert)).or_else(written)?;
                    }
                }
                printer.finish().or_else(written)
            }
        }
    }
}

/// A watch never ends, so a table (printed at the end) would never show:
/// it prints one JSON object a line unless CSV is asked for.
fn follow_style(output: OutputArgs) -> super::output::Style {
    match output.style() {
        super::output::Style::Csv => super::output::Style::Csv,
        _ => super::output::Style::Json,
    }
}

fn alerts(connection: &Connection) -> AlertServiceClient<crate::cli::client::Authorized> {
    connection.alerts()
}
