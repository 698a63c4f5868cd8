//! Conversions between the wire types (`pb`) and the model. Incoming messages
//! are checked here for what only the wire can get wrong (unset or unknown
//! enum values, malformed dates); the model validates the rest.

pub mod analysis;
pub mod export;
pub mod relatedness;

use std::sync::Arc;

use super::pb;
use crate::{
    error::{Error, Result},
    model::{
        Actor, ActorKind, ActorProfile, Change, Channel, Cluster, ClusterLink, ClusterLinkKey, ClusterLinkKind,
        Country, Date, Id, Link, LinkKey, LinkKind, Segment, SegmentSet, Site, Validity,
    },
    network::ChangeCounts,
};

/// Proto enum numbers are the model's `ALL` order plus one (0 is UNSPECIFIED);
/// `wire_enums_match_the_model` checks the names line up.
pub fn required_enum<T: Copy>(all: &[T], value: i32, field: &str, type_name: &str) -> Result<T> {
    match value {
        0 => Err(Error::invalid(field, format!("must be set to a {type_name} value"))),
        v if v > 0 && (v as usize) <= all.len() => Ok(all[v as usize - 1]),
        v => Err(Error::invalid(field, format!("{v} is not a known {type_name} value"))),
    }
}

/// Like `required_enum`, but UNSPECIFIED means "no filter".
pub fn optional_enum<T: Copy>(all: &[T], value: i32, field: &str, type_name: &str) -> Result<Option<T>> {
    if value == 0 {
        Ok(None)
    } else {
        required_enum(all, value, field, type_name).map(Some)
    }
}

pub fn wire<T: Copy + PartialEq>(all: &[T], value: T) -> i32 {
    all.iter().position(|v| *v == value).map_or(0, |i| i as i32 + 1)
}

pub fn link_kind(value: i32, field: &str) -> Result<LinkKind> {
    required_enum(LinkKind::ALL, value, field, "LinkKind")
}

pub fn date(text: &str, field: &str) -> Result<Option<Date>> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e: String| Error::invalid(field, e))
}

fn validity(from: &str, to: &str) -> Result<Validity> {
    Ok(Validity {
        from: date(from, "valid_from")?,
        to: date(to, "valid_to")?,
    })
}

pub fn text_of(date: Option<Date>) -> String {
    date.map(|d| d.to_string()).unwrap_or_default()
}

fn id(text: String) -> Id {
    Id::from(text)
}

fn optional_id(text: String) -> Option<Id> {
    (!text.is_empty()).then(|| Id::from(text))
}

pub fn cluster_from_pb(cluster: pb::Cluster) -> Result<Cluster> {
    Ok(Cluster {
        id: id(cluster.id),
        name: cluster.name,
        region: cluster.region,
        country: country_from_pb(&cluster.country)?,
        industry: cluster.industry,
        sites: cluster
            .sites
            .into_iter()
            .map(|site| Site {
                id: id(site.id),
                name: site.name,
                lat: site.lat,
                lon: site.lon,
            })
            .collect(),
    })
}

/// An empty code is an unknown country.
fn country_from_pb(code: &str) -> Result<Option<Country>> {
    match code {
        "" => Ok(None),
        code => Ok(Some(code.parse::<Country>().map_err(|e| Error::invalid("country", e))?)),
    }
}

pub fn cluster_to_pb(cluster: &Cluster) -> pb::Cluster {
    pb::Cluster {
        id: cluster.id.to_string(),
        name: cluster.name.clone(),
        region: cluster.region.clone(),
        country: cluster.country.map(|c| c.as_str().to_string()).unwrap_or_default(),
        industry: cluster.industry.clone(),
        sites: cluster
            .sites
            .iter()
            .map(|site| pb::Site {
                id: site.id.to_string(),
                name: site.name.clone(),
                lat: site.lat,
                lon: site.lon,
            })
            .collect(),
    }
}

pub fn actor_from_pb(actor: pb::Actor) -> Result<Actor> {
    let segments = segments_from_pb(&actor.segments)?;
    let country = country_from_pb(&actor.country)?;
    Ok(Actor {
        id: id(actor.id),
        name: actor.name,
        kind: required_enum(ActorKind::ALL, actor.kind, "kind", "ActorKind")?,
        industry: actor.industry,
        segments,
        cluster_ids: actor.cluster_ids.into_iter().map(id).collect(),
        site_id: optional_id(actor.site_id),
        country,
        employees: actor.employees,
        revenue: actor.revenue,
        validity: validity(&actor.valid_from, &actor.valid_to)?,
    })
}

fn segments_from_pb(segments: &[i32]) -> Result<SegmentSet> {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| required_enum(Segment::ALL, *s, &format!("segments[{i}]"), "Segment"))
        .collect()
}

fn required_date(text: &str, field: &str) -> Result<Date> {
    date(text, field)?.ok_or_else(|| Error::invalid(field, "must be a date (YYYY-MM-DD)"))
}

pub fn profile_from_pb(profile: pb::ActorProfile) -> Result<ActorProfile> {
    Ok(ActorProfile {
        actor_id: id(profile.actor_id),
        until: required_date(&profile.until, "until")?,
        industry: profile.industry,
        segments: segments_from_pb(&profile.segments)?,
        employees: profile.employees,
        revenue: profile.revenue,
    })
}

pub fn profile_to_pb(profile: &ActorProfile) -> pb::ActorProfile {
    pb::ActorProfile {
        actor_id: profile.actor_id.to_string(),
        until: profile.until.to_string(),
        industry: profile.industry.clone(),
        segments: profile.segments.iter().map(|s| wire(Segment::ALL, s)).collect(),
        employees: profile.employees,
        revenue: profile.revenue,
    }
}

pub fn actor_to_pb(actor: &Actor) -> pb::Actor {
    pb::Actor {
        id: actor.id.to_string(),
        name: actor.name.clone(),
        kind: wire(ActorKind::ALL, actor.kind),
        industry: actor.industry.clone(),
        segments: actor.segments.iter().map(|s| wire(Segment::ALL, s)).collect(),
        cluster_ids: actor.cluster_ids.iter().map(|c| c.to_string()).collect(),
        site_id: actor.site_id.as_deref().unwrap_or_default().to_string(),
        country: actor.country.map(|c| c.as_str().to_string()).unwrap_or_default(),
        employees: actor.employees,
        revenue: actor.revenue,
        valid_from: text_of(actor.validity.from),
        valid_to: text_of(actor.validity.to),
    }
}

pub fn link_from_pb(link: pb::Link) -> Result<Link> {
    Ok(Link {
        source: id(link.source),
        target: id(link.target),
        kind: link_kind(link.kind, "kind")?,
        channel: required_enum(Channel::ALL, link.channel, "channel", "Channel")?,
        weight: link.weight,
        validity: validity(&link.valid_from, &link.valid_to)?,
    })
}

pub fn link_to_pb(link: &Link) -> pb::Link {
    pb::Link {
        source: link.source.to_string(),
        target: link.target.to_string(),
        kind: wire(LinkKind::ALL, link.kind),
        channel: wire(Channel::ALL, link.channel),
        weight: link.weight,
        valid_from: text_of(link.validity.from),
        valid_to: text_of(link.validity.to),
    }
}

pub fn cluster_link_from_pb(link: pb::ClusterLink) -> Result<ClusterLink> {
    Ok(ClusterLink {
        source: id(link.source),
        target: id(link.target),
        kind: required_enum(ClusterLinkKind::ALL, link.kind, "kind", "ClusterLinkKind")?,
        channel: required_enum(Channel::ALL, link.channel, "channel", "Channel")?,
        weight: link.weight,
    })
}

pub fn cluster_link_to_pb(link: &ClusterLink) -> pb::ClusterLink {
    pb::ClusterLink {
        source: link.source.to_string(),
        target: link.target.to_string(),
        kind: wire(ClusterLinkKind::ALL, link.kind),
        channel: wire(Channel::ALL, link.channel),
        weight: link.weight,
    }
}

/// Converts one wire change; errors name the field inside the change.
fn change_from_pb(change: pb::Change) -> Result<Change> {
    use pb::change::Change as C;
    let Some(change) = change.change else {
        return Err(Error::invalid("", "must hold one of upsert_cluster, upsert_actor, upsert_link, upsert_cluster_link, delete_cluster, delete_actor, delete_link, delete_cluster_link"));
    };
    let (name, converted) = match change {
        C::UpsertCluster(c) => ("upsert_cluster", cluster_from_pb(c).map(Change::UpsertCluster)),
        C::UpsertActor(a) => ("upsert_actor", actor_from_pb(a).map(Change::UpsertActor)),
        C::UpsertLink(l) => ("upsert_link", link_from_pb(l).map(Change::UpsertLink)),
        C::UpsertClusterLink(l) => (
            "upsert_cluster_link",
            cluster_link_from_pb(l).map(Change::UpsertClusterLink),
        ),
        C::DeleteCluster(d) => (
            "delete_cluster",
            Ok(Change::DeleteCluster {
                id: id(d.id),
                cascade: d.cascade,
            }),
        ),
        C::DeleteActor(d) => (
            "delete_actor",
            Ok(Change::DeleteActor {
                id: id(d.id),
                cascade: d.cascade,
            }),
        ),
        C::DeleteLink(k) => (
            "delete_link",
            link_kind(k.kind, "kind").map(|kind| {
                Change::DeleteLink(LinkKey {
                    source: id(k.source),
                    target: id(k.target),
                    kind,
                })
            }),
        ),
        C::UpsertActorProfile(p) => (
            "upsert_actor_profile",
            profile_from_pb(p).map(Change::UpsertActorProfile),
        ),
        C::DeleteActorProfile(k) => (
            "delete_actor_profile",
            required_date(&k.until, "until").map(|until| Change::DeleteActorProfile {
                actor_id: id(k.actor_id),
                until,
            }),
        ),
        C::DeleteClusterLink(k) => (
            "delete_cluster_link",
            required_enum(ClusterLinkKind::ALL, k.kind, "kind", "ClusterLinkKind").map(|kind| {
                Change::DeleteClusterLink(ClusterLinkKey {
                    source: id(k.source),
                    target: id(k.target),
                    kind,
                })
            }),
        ),
    };
    converted.map_err(|e| e.within(name))
}

/// Converts the changes of a wire batch (ApplyChanges' or one of
/// ImportChanges'); an error names the item (`changes[3].upsert_link.kind`).
pub fn batch_from_pb(changes: Vec<pb::Change>) -> Result<Vec<Change>> {
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| change_from_pb(change).map_err(|e| e.within(&format!("changes[{i}]"))))
        .collect()
}

pub fn change_to_pb(change: &Change) -> pb::Change {
    use pb::change::Change as C;
    let change = match change {
        Change::UpsertCluster(c) => C::UpsertCluster(cluster_to_pb(c)),
        Change::UpsertActor(a) => C::UpsertActor(actor_to_pb(a)),
        Change::UpsertLink(l) => C::UpsertLink(link_to_pb(l)),
        Change::UpsertClusterLink(l) => C::UpsertClusterLink(cluster_link_to_pb(l)),
        Change::DeleteCluster { id, cascade } => C::DeleteCluster(pb::DeleteCluster {
            id: id.to_string(),
            cascade: *cascade,
        }),
        Change::DeleteActor { id, cascade } => C::DeleteActor(pb::DeleteActor {
            id: id.to_string(),
            cascade: *cascade,
        }),
        Change::DeleteLink(k) => C::DeleteLink(pb::LinkKey {
            source: k.source.to_string(),
            target: k.target.to_string(),
            kind: wire(LinkKind::ALL, k.kind),
        }),
        Change::DeleteClusterLink(k) => C::DeleteClusterLink(pb::ClusterLinkKey {
            source: k.source.to_string(),
            target: k.target.to_string(),
            kind: wire(ClusterLinkKind::ALL, k.kind),
        }),
        Change::UpsertActorProfile(p) => C::UpsertActorProfile(profile_to_pb(p)),
        Change::DeleteActorProfile { actor_id, until } => C::DeleteActorProfile(pb::ActorProfileKey {
            actor_id: actor_id.to_string(),
            until: until.to_string(),
        }),
    };
    pb::Change { change: Some(change) }
}

pub fn counts_to_pb(counts: &ChangeCounts) -> pb::ChangeCounts {
    pb::ChangeCounts {
        clusters_upserted: counts.clusters_upserted,
        actors_upserted: counts.actors_upserted,
        links_upserted: counts.links_upserted,
        cluster_links_upserted: counts.cluster_links_upserted,
        clusters_deleted: counts.clusters_deleted,
        actors_deleted: counts.actors_deleted,
        links_deleted: counts.links_deleted,
        cluster_links_deleted: counts.cluster_links_deleted,
        actor_profiles_upserted: counts.actor_profiles_upserted,
        actor_profiles_deleted: counts.actor_profiles_deleted,
    }
}

pub fn arc_rows<T, P>(rows: &[Arc<T>], to_pb: impl Fn(&T) -> P) -> Vec<P> {
    rows.iter().map(|row| to_pb(row)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Copy + std::fmt::Display>(all: &[T], prefix: &str, name_of: impl Fn(i32) -> Option<&'static str>) {
        for (i, value) in all.iter().enumerate() {
            assert_eq!(
                name_of(i as i32 + 1).map(str::to_string),
                Some(format!("{prefix}{value}"))
            );
        }
        assert_eq!(
            name_of(all.len() as i32 + 1),
            None,
            "{prefix} has values the model lacks"
        );
    }

    #[test]
    fn wire_enums_match_the_model() {
        check(ActorKind::ALL, "ACTOR_KIND_", |v| {
            pb::ActorKind::try_from(v).ok().map(|e| e.as_str_name())
        });
        check(Segment::ALL, "SEGMENT_", |v| {
            pb::Segment::try_from(v).ok().map(|e| e.as_str_name())
        });
        check(LinkKind::ALL, "LINK_KIND_", |v| {
            pb::LinkKind::try_from(v).ok().map(|e| e.as_str_name())
        });
        check(Channel::ALL, "CHANNEL_", |v| {
            pb::Channel::try_from(v).ok().map(|e| e.as_str_name())
        });
        check(ClusterLinkKind::ALL, "CLUSTER_LINK_KIND_", |v| {
            pb::ClusterLinkKind::try_from(v).ok().map(|e| e.as_str_name())
        });
    }
}
