//! `AlertService`: subscribing to alerts, listing them, and their rules.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tonic::{Request, Response, Status};

use super::paging::{next_page_token, page_request};
use crate::service::{
    convert::{optional_enum, required_enum, wire},
    pb,
    runtime::feed::{self, Events, Source, Watchers},
};
use crate::{
    alert::{
        engine::{AlertEngine, Raised},
        Alert, AlertFilter, AlertKind, AlertRules, Severity,
    },
    error::{Error, Result},
    model::Id,
};

pub struct AlertApi {
    engine: Arc<AlertEngine>,
    shutdown: watch::Receiver<bool>,
    watchers: Arc<Watchers>,
}

impl AlertApi {
    pub fn new(engine: Arc<AlertEngine>, shutdown: watch::Receiver<bool>, watchers: Arc<Watchers>) -> Self {
        AlertApi {
            engine,
            shutdown,
            watchers,
        }
    }
}

/// One subscriber's view of the alert log: only the alerts it asked for.
struct Alerts {
    engine: Arc<AlertEngine>,
    filter: AlertFilter,
}

impl Source for Alerts {
    type Item = Raised;
    type Event = pb::WatchAlertsResponse;
    const FIELD: &'static str = "from_sequence";
    const NOUN: &'static str = "sequence";

    fn subscribe(&self) -> broadcast::Receiver<Arc<Raised>> {
        self.engine.subscribe()
    }

    fn published(&self) -> u64 {
        self.engine.latest_sequence()
    }

    fn span(item: &Raised) -> (u64, u64) {
        item.span()
    }

    fn read(&self, from: u64, limit: usize) -> Result<Vec<Arc<Raised>>> {
        let alerts = self.engine.read(from, limit)?;
        Ok(alerts
            .into_iter()
            .map(|a| Arc::new(Raised { alerts: vec![a] }))
            .collect())
    }

    fn oldest(&self) -> Result<Option<u64>> {
        // Alerts are never dropped: the log starts at 1.
        Ok(Some(1))
    }

    fn may_trail(&self) -> bool {
        self.engine.replicated()
    }

    fn events(&self, item: &Raised, from: u64) -> Vec<(u64, pb::WatchAlertsResponse)> {
        item.alerts
            .iter()
            .filter(|a| a.sequence >= from && self.filter.matches(a))
            .map(|a| {
                let alert = Some(alert_to_pb(a));
                (a.sequence, pb::WatchAlertsResponse { alert })
            })
            .collect()
    }
}

/// An alert as the API carries it, encoded: what replicas add to the
/// ALERTS stream (`crate::replica::alerts`).
pub fn encode_alert(alert: &Alert) -> Vec<u8> {
    prost::Message::encode_to_vec(&alert_to_pb(alert))
}

fn alert_to_pb(alert: &Alert) -> pb::Alert {
    pb::Alert {
        sequence: alert.sequence,
        revision: alert.revision,
        kind: wire(&AlertKind::ALL, alert.kind),
        severity: wire(&Severity::ALL, alert.severity),
        cluster_ids: alert.clusters.iter().map(|c| c.to_string()).collect(),
        actor_ids: alert.actors.iter().map(|a| a.to_string()).collect(),
        figures: alert
            .figures
            .iter()
            .map(|f| pb::Figure {
                name: f.name.clone(),
                before: f.before,
                after: f.after,
            })
            .collect(),
        message: alert.message.clone(),
        raised_at: Some(prost_types::Timestamp {
            seconds: alert.raised_at_unix_ms.div_euclid(1000),
            nanos: (alert.raised_at_unix_ms.rem_euclid(1000) * 1_000_000) as i32,
        }),
    }
}

fn kinds(values: &[i32], field: &str) -> Result<Vec<AlertKind>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| required_enum(&AlertKind::ALL, *v, &format!("{field}[{i}]"), "AlertKind"))
        .collect()
}

fn ids(values: &[String]) -> Vec<Id> {
    values.iter().map(|v| Id::from(v.as_str())).collect()
}

fn filter(kind_values: &[i32], clusters: &[String], actors: &[String], min_severity: i32) -> Result<AlertFilter> {
    Ok(AlertFilter {
        kinds: kinds(kind_values, "kinds")?,
        clusters: ids(clusters),
        actors: ids(actors),
        min_severity: optional_enum(&Severity::ALL, min_severity, "min_severity", "Severity")?,
    })
}

fn rules_to_pb(rules: &AlertRules) -> pb::AlertRules {
    pb::AlertRules {
        centrality_top_k: rules.centrality_top_k,
        centrality_rank_move: rules.centrality_rank_move,
        overlap_threshold: rules.overlap_threshold,
        min_substitute_score: rules.min_substitute_score,
        disabled_kinds: rules.disabled_kinds.iter().map(|k| wire(&AlertKind::ALL, *k)).collect(),
        eci_shift: rules.eci_shift,
    }
}

/// The current rules with the fields named by `mask` (all when empty) taken
/// from `update`.
fn merged(current: AlertRules, update: &pb::AlertRules, mask: &[String]) -> Result<AlertRules> {
    const FIELDS: [&str; 6] = [
        "centrality_top_k",
        "centrality_rank_move",
        "overlap_threshold",
        "min_substitute_score",
        "disabled_kinds",
        "eci_shift",
    ];
    for (i, path) in mask.iter().enumerate() {
        if !FIELDS.contains(&path.as_str()) {
            return Err(Error::invalid(
                format!("update_mask.paths[{i}]"),
                format!(
                    "'{path}' is not a field of AlertRules; the fields are {}",
                    FIELDS.join(", ")
                ),
            ));
        }
    }
    let wanted = |field: &str| mask.is_empty() || mask.iter().any(|p| p == field);
    let mut rules = current;
    if wanted("centrality_top_k") {
        rules.centrality_top_k = update.centrality_top_k;
    }
    if wanted("centrality_rank_move") {
        rules.centrality_rank_move = update.centrality_rank_move;
    }
    if wanted("overlap_threshold") {
        rules.overlap_threshold = update.overlap_threshold;
    }
    if wanted("min_substitute_score") {
        rules.min_substitute_score = update.min_substitute_score;
    }
    if wanted("disabled_kinds") {
        rules.disabled_kinds = kinds(&update.disabled_kinds, "rules.disabled_kinds")?;
    }
    // Without a mask, 0 is a client that does not know the field.
    if wanted("eci_shift") && !(mask.is_empty() && update.eci_shift == 0.0) {
        rules.eci_shift = update.eci_shift;
    }
    Ok(rules)
}

/// Alerts read per step while filling a page.
const LIST_CHUNK: usize = 1024;

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for AlertApi {
    type WatchAlertsStream = Events<pb::WatchAlertsResponse>;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let client = crate::service::layers::auth::client_of(&request);
        let r = request.into_inner();
        let filter = filter(&r.kinds, &r.cluster_ids, &r.actor_ids, r.min_severity)?;
        let source = Alerts {
            engine: self.engine.clone(),
            filter,
        };
        let watching = self.watchers.admit("alerts", &client).await?;
        let stream = feed::start(Arc::new(source), r.from_sequence, self.shutdown.clone(), watching).await?;
        Ok(Response::new(stream))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        let r = request.into_inner();
        let filter = filter(&r.kinds, &r.cluster_ids, &r.actor_ids, r.min_severity)?;
        let fingerprint = format!("{}|from={}", filter.fingerprint_text(), r.from_sequence);
        let page = page_request(r.page_size, &r.page_token, &fingerprint)?;
        let start = match &page.after {
            Some(key) => {
                let forged = || Error::invalid("page_token", "is not a token this server issued");
                let last: [u8; 8] = key.as_slice().try_into().map_err(|_| forged())?;
                // A real token names an issued sequence; the largest u64 is
                // none, and adding one to it would wrap to the start.
                u64::from_be_bytes(last).checked_add(1).ok_or_else(forged)?
            }
            None => r.from_sequence.max(1),
        };
        let engine = self.engine.clone();
        let latest = engine.latest_sequence();
        let evaluated = engine.evaluated_revision();
        let (alerts, more) = tokio::task::spawn_blocking(move || -> Result<(Vec<Alert>, bool)> {
            let mut out = Vec::new();
            let mut from = start;
            while from <= latest {
                let chunk = engine.read(from, LIST_CHUNK)?;
                let Some(last) = chunk.last() else { break };
                from = last.sequence + 1;
                for alert in chunk.into_iter().filter(|a| a.sequence <= latest) {
                    if filter.matches(&alert) {
                        if out.len() == page.size {
                            return Ok((out, true));
                        }
                        out.push(alert);
                    }
                }
            }
            Ok((out, false))
        })
        .await
        .map_err(|e| crate::service::status::internal("listing alerts", e))??;
        let next_page_token = match alerts.last() {
            Some(last) if more => next_page_token(&fingerprint, &last.sequence.to_be_bytes()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAlertsResponse {
            alerts: alerts.iter().map(alert_to_pb).collect(),
            next_page_token,
            latest_sequence: latest,
            evaluated_revision: evaluated,
        }))
    }

    async fn get_alert_rules(
        &self,
        _: Request<pb::GetAlertRulesRequest>,
    ) -> Result<Response<pb::GetAlertRulesResponse>, Status> {
        let rules = Some(rules_to_pb(&self.engine.rules()));
        Ok(Response::new(pb::GetAlertRulesResponse { rules }))
    }

    async fn set_alert_rules(
        &self,
        request: Request<pb::SetAlertRulesRequest>,
    ) -> Result<Response<pb::SetAlertRulesResponse>, Status> {
        let r = request.into_inner();
        let update = r.rules.ok_or_else(|| Error::invalid("rules", "is required"))?;
        let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let rules = merged(self.engine.rules(), &update, &mask)?;
        let engine = self.engine.clone();
        let stored = tokio::task::spawn_blocking(move || engine.set_rules(rules))
            .await
            .map_err(|e| crate::service::status::internal("storing the rules", e))??;
        let rules = Some(rules_to_pb(&stored));
        Ok(Response::new(pb::SetAlertRulesResponse { rules }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_alert_enums_match_the_core() {
        for kind in AlertKind::ALL {
            let number = wire(&AlertKind::ALL, kind);
            let name = pb::AlertKind::try_from(number).unwrap().as_str_name();
            assert_eq!(name.strip_prefix("ALERT_KIND_"), Some(kind.as_str()));
        }
        for (severity, name) in Severity::ALL.into_iter().zip(["INFO", "WARNING", "CRITICAL"]) {
            let number = wire(&Severity::ALL, severity);
            let wire_name = pb::Severity::try_from(number).unwrap().as_str_name();
            assert_eq!(wire_name.strip_prefix("SEVERITY_"), Some(name));
        }
    }

    #[test]
    fn a_mask_sets_only_the_fields_it_names() {
        let update = pb::AlertRules {
            overlap_threshold: 0.5,
            ..Default::default()
        };
        let rules = merged(AlertRules::default(), &update, &["overlap_threshold".into()]).unwrap();
        assert_eq!(rules.overlap_threshold, 0.5);
        assert_eq!(rules.centrality_top_k, AlertRules::default().centrality_top_k);
        let error = merged(AlertRules::default(), &update, &["top_k".into()]).unwrap_err();
        assert!(error.to_string().starts_with("update_mask.paths[0]:"), "{error}");
    }
}
