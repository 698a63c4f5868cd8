//! The CSV import format: reading a directory of CSV files into changes that
//! remember the file and line they came from, and writing a network out in
//! the same format.
//!
//! Files (each optional, each with a header row; columns in any order; enum
//! values in any case; list fields separated by `;`):
//!
//! | file | required columns | optional columns |
//! |---|---|---|
//! | `clusters.csv` | id | name, region, industry, country |
//! | `sites.csv` | id, cluster_id, lat, lon | name |
//! | `actors.csv` | id, kind | name, industry, segments, clusters, site_id, country, employees, revenue, valid_from, valid_to |
//! | `links.csv` | source, target, kind | channel (PHYSICAL), weight (1), valid_from, valid_to |
//! | `cluster_links.csv` | source, target, kind | channel (VIRTUAL for PLATFORM, else PHYSICAL), weight (1) |
//! | `actor_profiles.csv` | actor_id, until | industry, segments, employees, revenue |

use std::{
    collections::HashMap,
    fmt,
    fs::File,
    path::{Path, PathBuf},
};

use crate::model::{
    Actor, ActorKind, ActorProfile, Change, Channel, Cluster, ClusterLink, ClusterLinkKind, Country, Date, Id, Link,
    LinkKind, Segment, Site, Validity,
};

/// Where a change came from: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: &'static str,
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A bad row: `file:line: what is wrong`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.message)
    }
}

pub struct SourcedChange {
    pub change: Change,
    pub origin: Origin,
}

pub const FILES: [&str; 6] = [
    "clusters.csv",
    "sites.csv",
    "actors.csv",
    "links.csv",
    "cluster_links.csv",
    "actor_profiles.csv",
];

/// Reads every CSV file of the format in `dir`, in dependency order. Returns
/// every bad row found (not just the first) or the changes, each checked on
/// its own; references between rows are checked by the server.
pub fn read_dir(dir: &Path) -> Result<Vec<SourcedChange>, Vec<RowError>> {
    let mut reader = DirReader::default();
    if !FILES.iter().any(|f| dir.join(f).is_file()) {
        return Err(vec![RowError {
            origin: Origin { file: "", line: 0 },
            message: format!("{} holds none of {}", dir.display(), FILES.join(", ")),
        }]);
    }
    let sites = reader.rows(dir, "sites.csv", &["id", "cluster_id", "lat", "lon"], |row| {
        let site = Site {
            id: row.id("id")?,
            name: row.text("name"),
            lat: row.number("lat")?.unwrap_or(f64::NAN),
            lon: row.number("lon")?.unwrap_or(f64::NAN),
        };
        Ok((row.id("cluster_id")?, site))
    });
    let mut sites_by_cluster: HashMap<Id, Vec<Site>> = HashMap::new();
    for (_, (cluster, site)) in sites {
        sites_by_cluster.entry(cluster).or_default().push(site);
    }
    let clusters = reader.rows(dir, "clusters.csv", &["id"], |row| {
        let id = row.id("id")?;
        Ok(Change::UpsertCluster(Cluster {
            sites: Vec::new(),
            name: row.text("name"),
            region: row.text("region"),
            country: row.parse::<Country>("country")?,
            industry: row.text("industry"),
            id,
        }))
    });
    let mut changes: Vec<SourcedChange> = Vec::new();
    for (origin, mut change) in clusters {
        if let Change::UpsertCluster(cluster) = &mut change {
            cluster.sites = sites_by_cluster.remove(&cluster.id).unwrap_or_default();
        }
        changes.push(SourcedChange { change, origin });
    }
    for cluster in sites_by_cluster.keys() {
        reader.errors.push(RowError {
            origin: Origin {
                file: "sites.csv",
                line: 0,
            },
            message: format!("sites name cluster '{cluster}', which clusters.csv does not define"),
        });
    }
    let actors = reader.rows(dir, "actors.csv", &["id", "kind"], |row| {
        Ok(Change::UpsertActor(Actor {
            id: row.id("id")?,
            name: row.text("name"),
            kind: row.parse::<ActorKind>("kind")?.ok_or("kind: must not be empty")?,
            industry: row.text("industry"),
            segments: row.list::<Segment>("segments")?.into_iter().collect(),
            cluster_ids: row.list::<String>("clusters")?.into_iter().map(Id::from).collect(),
            site_id: row.optional_id("site_id"),
            country: row.parse::<Country>("country")?,
            employees: row.parse::<u64>("employees")?,
            revenue: row.number("revenue")?,
            validity: row.validity()?,
        }))
    });
    let links = reader.rows(dir, "links.csv", &["source", "target", "kind"], |row| {
        Ok(Change::UpsertLink(Link {
            source: row.id("source")?,
            target: row.id("target")?,
            kind: row.parse::<LinkKind>("kind")?.ok_or("kind: must not be empty")?,
            channel: row.parse::<Channel>("channel")?.unwrap_or(Channel::Physical),
            weight: row.number("weight")?.unwrap_or(1.0),
            validity: row.validity()?,
        }))
    });
    let cluster_links = reader.rows(dir, "cluster_links.csv", &["source", "target", "kind"], |row| {
        let kind = row.parse::<ClusterLinkKind>("kind")?.ok_or("kind: must not be empty")?;
        let default_channel = if kind == ClusterLinkKind::Platform {
            Channel::Virtual
        } else {
            Channel::Physical
        };
        Ok(Change::UpsertClusterLink(ClusterLink {
            source: row.id("source")?,
            target: row.id("target")?,
            kind,
            channel: row.parse::<Channel>("channel")?.unwrap_or(default_channel),
            weight: row.number("weight")?.unwrap_or(1.0),
        }))
    });
    let profiles = reader.rows(dir, "actor_profiles.csv", &["actor_id", "until"], |row| {
        Ok(Change::UpsertActorProfile(ActorProfile {
            actor_id: row.id("actor_id")?,
            until: row.parse::<Date>("until")?.ok_or("until: must not be empty")?,
            industry: row.text("industry"),
            segments: row.list::<Segment>("segments")?.into_iter().collect(),
            employees: row.parse::<u64>("employees")?,
            revenue: row.number("revenue")?,
        }))
    });
    for (origin, change) in actors.into_iter().chain(links).chain(cluster_links).chain(profiles) {
        changes.push(SourcedChange { change, origin });
    }
    // Item-level checks (weights, coordinates, dates) here, so every bad row
    // is reported at once with its line.
    for sourced in &changes {
        if let Err(error) = sourced.change.clone().validated() {
            reader.errors.push(RowError {
                origin: sourced.origin.clone(),
                message: error.to_string(),
            });
        }
    }
    if reader.errors.is_empty() {
        Ok(changes)
    } else {
        reader
            .errors
            .sort_by(|a, b| (a.origin.file, a.origin.line).cmp(&(b.origin.file, b.origin.line)));
        Err(reader.errors)
    }
}

#[derive(Default)]
struct DirReader {
    errors: Vec<RowError>,
}

/// One CSV record with its header, for typed access by column name.
struct Row<'a> {
    header: &'a HashMap<String, usize>,
    record: &'a csv::StringRecord,
}

type RowResult<T> = Result<T, String>;

impl Row<'_> {
    fn raw(&self, column: &str) -> &str {
        self.header
            .get(column)
            .and_then(|i| self.record.get(*i))
            .map(str::trim)
            .unwrap_or("")
    }

    fn text(&self, column: &str) -> String {
        self.raw(column).to_string()
    }

    fn id(&self, column: &str) -> RowResult<Id> {
        match self.raw(column) {
            "" => Err(format!("{column}: must not be empty")),
            text => Ok(Id::from(text)),
        }
    }

    fn optional_id(&self, column: &str) -> Option<Id> {
        Some(self.raw(column)).filter(|t| !t.is_empty()).map(Id::from)
    }

    fn parse<T: std::str::FromStr>(&self, column: &str) -> RowResult<Option<T>>
    where
        T::Err: fmt::Display,
    {
        match self.raw(column) {
            "" => Ok(None),
            text => text.parse().map(Some).map_err(|e| format!("{column}: {e}")),
        }
    }

    fn number(&self, column: &str) -> RowResult<Option<f64>> {
        match self.raw(column) {
            "" => Ok(None),
            text => text
                .parse()
                .map(Some)
                .map_err(|_| format!("{column}: '{text}' is not a number")),
        }
    }

    fn list<T: std::str::FromStr>(&self, column: &str) -> RowResult<Vec<T>>
    where
        T::Err: fmt::Display,
    {
        self.raw(column)
            .split(';')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.parse().map_err(|e| format!("{column}: {e}")))
            .collect()
    }

    fn validity(&self) -> RowResult<Validity> {
        Ok(Validity {
            from: self.parse::<Date>("valid_from")?,
            to: self.parse::<Date>("valid_to")?,
        })
    }
}

impl DirReader {
    /// Parses every record of `dir/file` with `parse`; a missing file is no rows.
    fn rows<T>(
        &mut self,
        dir: &Path,
        file: &'static str,
        required: &[&str],
        parse: impl Fn(&Row) -> RowResult<T>,
    ) -> Vec<(Origin, T)> {
        let path: PathBuf = dir.join(file);
        if !path.is_file() {
            return Vec::new();
        }
        let at = |line: u64| Origin { file, line };
        let mut csv = match File::open(&path) {
            Ok(f) => csv::ReaderBuilder::new().flexible(true).from_reader(f),
            Err(e) => {
                self.errors.push(RowError {
                    origin: at(0),
                    message: format!("cannot open: {e}"),
                });
                return Vec::new();
            }
        };
        let header: HashMap<String, usize> = match csv.headers() {
            Ok(h) => h
                .iter()
                .enumerate()
                .map(|(i, name)| (name.trim().to_ascii_lowercase(), i))
                .collect(),
            Err(e) => {
                self.errors.push(RowError {
                    origin: at(1),
                    message: format!("unreadable header: {e}"),
                });
                return Vec::new();
            }
        };
        let missing: Vec<&str> = required.iter().copied().filter(|c| !header.contains_key(*c)).collect();
        if !missing.is_empty() {
            self.errors.push(RowError {
                origin: at(1),
                message: format!("the header lacks required columns: {}", missing.join(", ")),
            });
            return Vec::new();
        }
        let mut rows = Vec::new();
        for record in csv.records() {
            match record {
                Ok(record) => {
                    let line = record.position().map_or(0, |p| p.line());
                    match parse(&Row {
                        header: &header,
                        record: &record,
                    }) {
                        Ok(value) => rows.push((at(line), value)),
                        Err(message) => self.errors.push(RowError {
                            origin: at(line),
                            message,
                        }),
                    }
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    self.errors.push(RowError {
                        origin: at(line),
                        message: e.to_string(),
                    });
                }
            }
        }
        rows
    }
}

/// Writes changes' upserts as a CSV directory in the format above (deletes
/// have no CSV form and are skipped).
pub fn write_dir(dir: &Path, changes: &[Change]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let open = |file: &str| csv::Writer::from_path(dir.join(file));
    let mut clusters = open("clusters.csv")?;
    let mut sites = open("sites.csv")?;
    let mut actors = open("actors.csv")?;
    let mut links = open("links.csv")?;
    let mut cluster_links = open("cluster_links.csv")?;
    let mut profiles = open("actor_profiles.csv")?;
    profiles.write_record(["actor_id", "until", "industry", "segments", "employees", "revenue"])?;
    clusters.write_record(["id", "name", "region", "industry", "country"])?;
    sites.write_record(["id", "cluster_id", "name", "lat", "lon"])?;
    actors.write_record([
        "id",
        "name",
        "kind",
        "industry",
        "segments",
        "clusters",
        "site_id",
        "country",
        "employees",
        "revenue",
        "valid_from",
        "valid_to",
    ])?;
    links.write_record([
        "source",
        "target",
        "kind",
        "channel",
        "weight",
        "valid_from",
        "valid_to",
    ])?;
    cluster_links.write_record(["source", "target", "kind", "channel", "weight"])?;
    let date = |d: Option<Date>| d.map(|d| d.to_string()).unwrap_or_default();
    for change in changes {
        match change {
            Change::UpsertCluster(c) => {
                let country = c.country.map(|c| c.as_str().to_string()).unwrap_or_default();
                clusters.write_record([&*c.id, &c.name, &c.region, &c.industry, &country])?;
                for s in &c.sites {
                    sites.write_record([&*s.id, &*c.id, &s.name, &s.lat.to_string(), &s.lon.to_string()])?;
                }
            }
            Change::UpsertActor(a) => {
                let segments: Vec<&str> = a.segments.iter().map(Segment::as_str).collect();
                let clusters: Vec<&str> = a.cluster_ids.iter().map(|c| &**c).collect();
                actors.write_record([
                    a.id.to_string(),
                    a.name.clone(),
                    a.kind.to_string(),
                    a.industry.clone(),
                    segments.join(";"),
                    clusters.join(";"),
                    a.site_id.as_deref().unwrap_or_default().to_string(),
                    a.country.map(|c| c.as_str().to_string()).unwrap_or_default(),
                    a.employees.map(|e| e.to_string()).unwrap_or_default(),
                    a.revenue.map(|r| r.to_string()).unwrap_or_default(),
                    date(a.validity.from),
                    date(a.validity.to),
                ])?;
            }
            Change::UpsertLink(l) => links.write_record([
                l.source.to_string(),
                l.target.to_string(),
                l.kind.to_string(),
                l.channel.to_string(),
                l.weight.to_string(),
                date(l.validity.from),
                date(l.validity.to),
            ])?,
            Change::UpsertClusterLink(l) => cluster_links.write_record([
                l.source.to_string(),
                l.target.to_string(),
                l.kind.to_string(),
                l.channel.to_string(),
                l.weight.to_string(),
            ])?,
            Change::UpsertActorProfile(p) => {
                let segments: Vec<&str> = p.segments.iter().map(Segment::as_str).collect();
                profiles.write_record([
                    p.actor_id.to_string(),
                    p.until.to_string(),
                    p.industry.clone(),
                    segments.join(";"),
                    p.employees.map(|e| e.to_string()).unwrap_or_default(),
                    p.revenue.map(|r| r.to_string()).unwrap_or_default(),
                ])?;
            }
            _ => {}
        }
    }
    for mut writer in [clusters, sites, actors, links, cluster_links, profiles] {
        writer.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn bad_rows_are_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clusters.csv", "id,name\nc1,One\n");
        write(
            dir.path(),
            "actors.csv",
            "id,kind,clusters\na1,firm,c1\na2,refinery,c1\n",
        );
        write(dir.path(), "links.csv", "source,target,kind,weight\na1,a2,supply,-3\n");
        let errors = read_dir(dir.path()).err().unwrap();
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("actors.csv:3: kind: unknown value 'refinery'"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("links.csv:2: weight: -3"), "{}", lines[1]);
    }

    #[test]
    fn the_demo_survives_a_round_trip_through_csv() {
        let dir = tempfile::tempdir().unwrap();
        let mut demo = crate::demo::demo_changes();
        demo.push(Change::UpsertActorProfile(ActorProfile {
            actor_id: "ks-firm-10".into(),
            until: "2016-01-01".parse().unwrap(),
            industry: "C2620".into(),
            segments: [Segment::Manufacturing, Segment::ProductDevelopment]
                .into_iter()
                .collect(),
            employees: Some(1200),
            revenue: Some(3.5e8),
        }));
        write_dir(dir.path(), &demo).unwrap();
        let read: Vec<Change> = read_dir(dir.path())
            .ok()
            .unwrap()
            .into_iter()
            .map(|s| s.change)
            .collect();
        assert_eq!(read, demo);
    }
}
