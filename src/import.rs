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
    ops::ControlFlow,
    path::{Path, PathBuf},
};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::model::{
    Actor, ActorKind, ActorProfile, Change, Channel, Cluster, ClusterLink, ClusterLinkKind, Country, Date, Id, Link,
    LinkKind, Segment, Site, Validity,
};

/// Where a change came from: `file:line`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The first of the two passes `clusternet import` makes: parses and checks
/// every row of every file in `dir` and keeps none. Returns the number of
/// changes the directory holds, or every bad row found (not just the first);
/// references between rows are checked by the server.
///
/// Why two passes: a bad row anywhere must import nothing, and a national
/// network's rows held at once are gigabytes (4.7 GB for 11M rows) and
/// seconds of parsing before the first batch goes out. Checked first, the
/// rows can then be read again part by part while the earlier parts upload.
pub fn check_dir(dir: &Path) -> Result<Checked, Vec<RowError>> {
    let mut checked = Checked::default();
    // Each change is checked on its own (weights, coordinates, dates) and
    // dropped on the thread that parsed it; a cluster without a country
    // is looked up where its sites lie, for the report.
    let check = |change: Change| {
        let change = change.validated().map_err(|e| e.to_string())?;
        Ok(match change {
            Change::UpsertCluster(cluster) if cluster.country.is_none() => {
                Some((cluster.id.clone(), crate::geo::home_country(&cluster)))
            }
            _ => None,
        })
    };
    let errors = each_change(dir, &check, &mut |part| {
        checked.changes += part.len() as u64;
        for (origin, home) in part {
            if let Some((cluster, home)) = home {
                checked.homes.push((origin, cluster, home));
            }
        }
        ControlFlow::Continue(())
    });
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// What the check of a directory found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checked {
    /// Changes the directory holds.
    pub changes: u64,
    /// The clusters without a `country`, each with the home country its
    /// sites give (or why they give none), by the row that defines it.
    pub homes: Vec<(Origin, Id, crate::geo::HomeCountry)>,
}

impl Checked {
    /// For the import's summary, per file: the clusters whose country came
    /// from their sites, and those it could not, with why.
    pub fn home_report(&self) -> Vec<String> {
        use crate::geo::HomeCountry;
        let mut lines = Vec::new();
        let mut files: Vec<&str> = self.homes.iter().map(|(o, _, _)| o.file).collect();
        files.dedup();
        for file in files {
            let of_file = || self.homes.iter().filter(move |(o, _, _)| o.file == file);
            let derived: Vec<String> = of_file()
                .filter_map(|(_, id, home)| match home {
                    HomeCountry::FromSites(c) => Some(format!("{id} {}", c.as_str())),
                    _ => None,
                })
                .collect();
            let unknown: Vec<String> = of_file()
                .filter_map(|(_, id, home)| match home {
                    HomeCountry::Unknown(why) => Some(format!("{id} ({why})")),
                    _ => None,
                })
                .collect();
            if !derived.is_empty() {
                lines.push(format!(
                    "{file}: {} clusters without a country take it from their sites: {}",
                    derived.len(),
                    derived.join(", ")
                ));
            }
            if !unknown.is_empty() {
                lines.push(format!(
                    "{file}: {} clusters without a country have none from their sites either: {}",
                    unknown.len(),
                    unknown.join(", ")
                ));
            }
        }
        lines
    }
}

/// The second pass: hands the changes of `dir` to `sink` in order, a few
/// parts of a file at a time (parsed on every core), until `sink` breaks.
/// Rows are parsed but not checked again: `check_dir` did, and the server
/// checks every change. A row that no longer parses (the file changed since
/// the check) is returned as an error.
pub fn read_dir(dir: &Path, mut sink: impl FnMut(Vec<SourcedChange>) -> ControlFlow<()>) -> Result<(), Vec<RowError>> {
    let errors = each_change(dir, &Ok, &mut |changes| {
        sink(
            changes
                .into_iter()
                .map(|(origin, change)| SourcedChange { change, origin })
                .collect(),
        )
    });
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// How the rows of one file become changes.
type ChangeParser = fn(&Row) -> RowResult<Change>;

/// The files after clusters.csv (and the sites folded into it), in
/// dependency order, with their required columns.
const CHANGE_FILES: [(&str, &[&str], ChangeParser); 4] = [
    ("actors.csv", &["id", "kind"], actor_row),
    ("links.csv", &["source", "target", "kind"], link_row),
    ("cluster_links.csv", &["source", "target", "kind"], cluster_link_row),
    ("actor_profiles.csv", &["actor_id", "until"], profile_row),
];

/// Every file of `dir` in dependency order, each change given to `keep` on
/// the thread that parsed it and what it keeps handed to `sink` part by
/// part; returns the bad rows, sorted by file and line.
fn each_change<T: Send>(
    dir: &Path,
    keep: &(impl Fn(Change) -> RowResult<T> + Sync),
    sink: &mut dyn FnMut(Vec<(Origin, T)>) -> ControlFlow<()>,
) -> Vec<RowError> {
    let mut reader = DirReader::default();
    if !FILES.iter().any(|f| dir.join(f).is_file()) {
        return vec![RowError {
            origin: Origin { file: "", line: 0 },
            message: format!("{} holds none of {}", dir.display(), FILES.join(", ")),
        }];
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
        Ok(Cluster {
            sites: Vec::new(),
            name: row.text("name"),
            region: row.text("region"),
            country: row.parse::<Country>("country")?,
            industry: row.text("industry"),
            id,
        })
    });
    let mut kept = Vec::new();
    for (origin, mut cluster) in clusters {
        // The sites are part of the cluster, so checked with it.
        cluster.sites = sites_by_cluster.remove(&cluster.id).unwrap_or_default();
        match keep(Change::UpsertCluster(cluster)) {
            Ok(change) => kept.push((origin, change)),
            Err(message) => reader.errors.push(RowError { origin, message }),
        }
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
    let mut flow = if kept.is_empty() {
        ControlFlow::Continue(())
    } else {
        sink(kept)
    };
    for (file, required, parse) in CHANGE_FILES {
        if flow.is_break() {
            break;
        }
        flow = reader.each_part(dir, file, required, |row| parse(row).and_then(keep), sink);
    }
    let mut errors = reader.errors;
    errors.sort_by(|a, b| (a.origin.file, a.origin.line).cmp(&(b.origin.file, b.origin.line)));
    errors
}

fn actor_row(row: &Row) -> RowResult<Change> {
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
}

fn link_row(row: &Row) -> RowResult<Change> {
    Ok(Change::UpsertLink(Link {
        source: row.id("source")?,
        target: row.id("target")?,
        kind: row.parse::<LinkKind>("kind")?.ok_or("kind: must not be empty")?,
        channel: row.parse::<Channel>("channel")?.unwrap_or(Channel::Physical),
        weight: row.number("weight")?.unwrap_or(1.0),
        validity: row.validity()?,
    }))
}

fn cluster_link_row(row: &Row) -> RowResult<Change> {
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
}

fn profile_row(row: &Row) -> RowResult<Change> {
    Ok(Change::UpsertActorProfile(ActorProfile {
        actor_id: row.id("actor_id")?,
        until: row.parse::<Date>("until")?.ok_or("until: must not be empty")?,
        industry: row.text("industry"),
        segments: row.list::<Segment>("segments")?.into_iter().collect(),
        employees: row.parse::<u64>("employees")?,
        revenue: row.number("revenue")?,
    }))
}

struct DirReader {
    errors: Vec<RowError>,
    /// How much of a file is read at once.
    block_bytes: usize,
}

impl Default for DirReader {
    fn default() -> Self {
        DirReader {
            errors: Vec::new(),
            block_bytes: BLOCK_BYTES,
        }
    }
}

/// Each column's place by its name. Fx, not SipHash: every field of every
/// row is found by name, and SipHash was a tenth of a national import's
/// parse.
type Header = FxHashMap<String, usize>;

/// One CSV record with its header, for typed access by column name.
struct Row<'a> {
    header: &'a Header,
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

/// A file body at least this large, with no quotes, is parsed in parts in
/// parallel.
const PARALLEL_FROM_BYTES: usize = 1 << 20;

/// About how large a part of a large file is: small enough that the parts
/// parsed at once (a few per thread) are a few megabytes of changes while
/// the earlier ones upload.
const PART_BYTES: usize = 2 << 20;

/// How much of a file is read at once, cut at a line end: what the reader
/// holds of a file, whatever its size (a national links.csv was read whole,
/// and the import client peaked at 663 MiB for 394 MiB of CSV).
const BLOCK_BYTES: usize = 32 << 20;

/// The records of `body`, each given to `parse` with the 1-based line of the
/// file it starts on (`first_line` being the body's first).
fn parse_records<T>(
    body: &[u8],
    first_line: u64,
    header: &Header,
    parse: &(impl Fn(&Row) -> RowResult<T> + Sync),
) -> Vec<(u64, RowResult<T>)> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(body);
    // Lines are counted here from the records' byte offsets: the csv
    // reader's own count skips blank lines and counts a CRLF file short.
    let (mut line, mut counted_to) = (first_line, 0usize);
    let mut line_of = |p: Option<&csv::Position>| {
        let Some(mut at) = p.map(|p| (p.byte() as usize).min(body.len())) else {
            return 0;
        };
        // A record's position is where the reader began: before the blank
        // lines it skipped.
        while at < body.len() && matches!(body[at], b'\r' | b'\n') {
            at += 1;
        }
        if at >= counted_to {
            line += body[counted_to..at].iter().filter(|b| **b == b'\n').count() as u64;
            counted_to = at;
        }
        line
    };
    // About one record in 32 bytes (a link row is 35): growing the list
    // from empty copied it over and over.
    let mut out = Vec::with_capacity(body.len() / 32);
    for record in csv.records() {
        out.push(match record {
            Ok(record) => (
                line_of(record.position()),
                parse(&Row {
                    header,
                    record: &record,
                }),
            ),
            Err(e) => (line_of(e.position()), Err(e.to_string())),
        });
    }
    out
}

impl DirReader {
    /// Every row of `dir/file` parsed with `parse`, at once; a missing file
    /// is no rows.
    fn rows<T: Send>(
        &mut self,
        dir: &Path,
        file: &'static str,
        required: &[&str],
        parse: impl Fn(&Row) -> RowResult<T> + Sync,
    ) -> Vec<(Origin, T)> {
        let mut rows = Vec::new();
        let _ = self.each_part(dir, file, required, parse, &mut |part| {
            rows.extend(part);
            ControlFlow::Continue(())
        });
        rows
    }

    /// Parses the records of `dir/file` with `parse` and hands the good ones
    /// to `sink` in file order, a few parts at a time, until it breaks; bad
    /// rows go to `self.errors`. A missing file is no rows.
    ///
    /// Why in parts: the links of a national network are 350 MB of CSV. A
    /// body with no quote cannot hold a line break inside a field, so it is
    /// cut at line ends into parts that parse on every core, a window of
    /// them at a time so that what is held stays small; a quoted body is
    /// parsed in one piece.
    fn each_part<T: Send>(
        &mut self,
        dir: &Path,
        file: &'static str,
        required: &[&str],
        parse: impl Fn(&Row) -> RowResult<T> + Sync,
        sink: &mut dyn FnMut(Vec<(Origin, T)>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let path: PathBuf = dir.join(file);
        if !path.is_file() {
            return ControlFlow::Continue(());
        }
        let file_name = file;
        let at = |line: u64| Origin { file, line };
        let cannot_read = |e: std::io::Error| unreadable(file_name, e);
        let mut file = match std::fs::File::open(&path) {
            Ok(opened) => opened,
            Err(e) => {
                self.errors.push(cannot_read(e));
                return ControlFlow::Continue(());
            }
        };
        // The first block holds the header line at least.
        let mut block = Vec::new();
        let mut ended = false;
        while !ended && !block.contains(&b'\n') {
            let Some(now) = self.read_more(&mut file, &mut block, file_name) else {
                return ControlFlow::Continue(());
            };
            ended = now;
        }
        let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(&block[..]);
        let header: Header = match csv.headers() {
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
                return ControlFlow::Continue(());
            }
        };
        let missing: Vec<&str> = required.iter().copied().filter(|c| !header.contains_key(*c)).collect();
        if !missing.is_empty() {
            self.errors.push(RowError {
                origin: at(1),
                message: format!("the header lacks required columns: {}", missing.join(", ")),
            });
            return ControlFlow::Continue(());
        }
        // Where the body starts: past the header record.
        let body_start = (csv.position().byte() as usize).min(block.len());
        let mut line = 1 + block[..body_start].iter().filter(|b| **b == b'\n').count() as u64;
        block.drain(..body_start);
        // Block by block, each cut after its last line end (the rest begins
        // the next). A quote may hide a line break inside a field, so from
        // the first block holding one the rest of the file is read and
        // parsed whole, as one body.
        loop {
            if !ended && block.contains(&b'"') {
                let mut rest = Vec::new();
                if let Err(e) = std::io::Read::read_to_end(&mut file, &mut rest) {
                    self.errors.push(cannot_read(e));
                    return ControlFlow::Continue(());
                }
                block.extend_from_slice(&rest);
                ended = true;
            }
            let cut = if ended {
                block.len()
            } else {
                block.iter().rposition(|b| *b == b'\n').map_or(0, |at| at + 1)
            };
            if cut > 0 {
                self.parse_body(&block[..cut], line, &header, at, &parse, sink)?;
                line += block[..cut].iter().filter(|b| **b == b'\n').count() as u64;
                block.drain(..cut);
            }
            if ended {
                return ControlFlow::Continue(());
            }
            // A line longer than a block grows the block until it ends.
            let Some(now) = self.read_more(&mut file, &mut block, file_name) else {
                return ControlFlow::Continue(());
            };
            ended = now;
        }
    }

    /// Reads one more block of `file` onto `block`: whether the file ended,
    /// or None (the error noted against `file_name`) if it cannot be read.
    fn read_more(&mut self, file: &mut std::fs::File, block: &mut Vec<u8>, file_name: &'static str) -> Option<bool> {
        let want = block.len() + self.block_bytes;
        match read_block(file, block, want) {
            Ok(ended) => Some(ended),
            Err(e) => {
                self.errors.push(unreadable(file_name, e));
                None
            }
        }
    }

    /// Parses `body` (whole lines; `body_line` its first) and hands the
    /// good rows to `sink`: in parts on every core when it is large and
    /// holds no quote, a window of parts at a time.
    fn parse_body<T: Send>(
        &mut self,
        body: &[u8],
        body_line: u64,
        header: &Header,
        at: impl Fn(u64) -> Origin,
        parse: &(impl Fn(&Row) -> RowResult<T> + Sync),
        sink: &mut dyn FnMut(Vec<(Origin, T)>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let threads = rayon::current_num_threads();
        let parts: Vec<(usize, usize)> = if body.len() >= PARALLEL_FROM_BYTES && !body.contains(&b'"') {
            let count = (threads * 4).max(body.len() / PART_BYTES);
            let mut cuts = vec![0];
            for k in 1..count {
                let from = (body.len() * k / count).max(*cuts.last().unwrap_or(&0));
                // Just past the next line end.
                match body[from..].iter().position(|b| *b == b'\n') {
                    Some(at) => cuts.push(from + at + 1),
                    None => break,
                }
            }
            cuts.push(body.len());
            cuts.dedup();
            cuts.windows(2).map(|w| (w[0], w[1])).collect()
        } else {
            vec![(0, body.len())]
        };
        // Each part's first line: the body's, plus the line ends before it.
        let line_ends: Vec<u64> = parts
            .par_iter()
            .map(|&(start, end)| body[start..end].iter().filter(|b| **b == b'\n').count() as u64)
            .collect();
        let first_lines = line_ends.iter().scan(body_line, |line, ends| {
            let first = *line;
            *line += ends;
            Some(first)
        });
        let parts: Vec<(usize, usize, u64)> = parts.iter().zip(first_lines).map(|(&(s, e), l)| (s, e, l)).collect();
        for window in parts.chunks(threads * 2) {
            let parsed: Vec<Vec<(u64, RowResult<T>)>> = window
                .par_iter()
                .map(|&(start, end, first_line)| parse_records(&body[start..end], first_line, header, parse))
                .collect();
            let mut rows = Vec::with_capacity(parsed.iter().map(Vec::len).sum());
            for (line, result) in parsed.into_iter().flatten() {
                match result {
                    Ok(value) => rows.push((at(line), value)),
                    Err(message) => self.errors.push(RowError {
                        origin: at(line),
                        message,
                    }),
                }
            }
            if !rows.is_empty() {
                sink(rows)?;
            }
        }
        ControlFlow::Continue(())
    }
}

/// A file that cannot be read, as a row error on its line 0.
fn unreadable(file: &'static str, e: std::io::Error) -> RowError {
    RowError {
        origin: Origin { file, line: 0 },
        message: format!("cannot read: {e}"),
    }
}

/// Reads from `file` until `block` holds `want` bytes or the file ends;
/// whether it ended.
fn read_block(file: &mut std::fs::File, block: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    use std::io::Read;
    let need = want.saturating_sub(block.len()) as u64;
    let read = file.by_ref().take(need).read_to_end(block)? as u64;
    Ok(read < need)
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
        let errors = check_dir(dir.path()).err().unwrap();
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("actors.csv:3: kind: unknown value 'refinery'"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("links.csv:2: weight: -3"), "{}", lines[1]);
    }

    /// A body large enough to be parsed in parts gives the same rows, and
    /// the same bad rows at the same lines, as one parsed whole; a quoted
    /// body (a field may hold a line break) is parsed whole.
    #[test]
    fn a_large_file_parsed_in_parts_reads_as_one_parsed_whole() {
        let rows = 60_000; // over PARALLEL_FROM_BYTES
        let mut text = String::from("source,target,kind,weight\r\n");
        for i in 0..rows {
            // Every 7,919th row has a bad weight, and every 10,007th is blank.
            let weight = if i % 7_919 == 5 {
                "-1".to_string()
            } else {
                format!("{}", 1 + i % 3)
            };
            text.push_str(&format!("a{i},b{i},supply,{weight}\r\n"));
            if i % 10_007 == 3 {
                text.push_str("\r\n");
            }
        }
        assert!(text.len() > PARALLEL_FROM_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let read_in_blocks = |text: &str, block_bytes: usize| {
            write(dir.path(), "links.csv", text);
            let mut reader = DirReader {
                block_bytes,
                ..DirReader::default()
            };
            let links = reader.rows(dir.path(), "links.csv", &["source", "target", "kind"], |row| {
                Ok((
                    row.id("source")?,
                    row.number("weight")?.filter(|w| *w > 0.0).ok_or("weight: -1")?,
                ))
            });
            let errors: Vec<String> = reader.errors.iter().map(|e| e.to_string()).collect();
            (links, errors)
        };
        let read = |text: &str| read_in_blocks(text, BLOCK_BYTES);
        let (links, errors) = read(&text);
        assert_eq!(links.len() + errors.len(), rows);
        // The line of each row, counted here: the header is line 1.
        let mut line = 1;
        let mut expected_errors = Vec::new();
        let mut expected_lines = Vec::new();
        for i in 0..rows {
            line += 1;
            if i % 7_919 == 5 {
                expected_errors.push(format!("links.csv:{line}: weight: -1"));
            } else {
                expected_lines.push((line, format!("a{i}")));
            }
            if i % 10_007 == 3 {
                line += 1;
            }
        }
        assert_eq!(errors, expected_errors, "{:?}", &errors[..errors.len().min(3)]);
        let got: Vec<(u64, String)> = links.iter().map(|(o, (id, _))| (o.line, id.to_string())).collect();
        assert_eq!(got, expected_lines);

        // Quoted, one field holding a line break: parsed whole, lines still right.
        let quoted = text.replacen("a1,b1,supply", "\"a\n1\",b1,supply", 1);
        let (links, errors) = read(&quoted);
        assert_eq!(&*links[1].1 .0, "a\n1");
        assert_eq!(errors.len(), expected_errors.len());
        assert_eq!(
            links[2].0.line,
            expected_lines[2].0 + 1,
            "the quoted line break moves later rows down"
        );

        // Read a block at a time, however small (7 bytes: shorter than a
        // line), the rows and their lines are the same; so they are with a
        // quoted line break early, or late, after blocks parsed in parts.
        let late = text.replacen("a59990,b59990,supply", "\"a5999\n0\",b59990,supply", 1);
        for text in [&text, &quoted, &late] {
            let whole = read(text);
            for block_bytes in [7, 4_096, PARALLEL_FROM_BYTES + 1] {
                assert!(
                    read_in_blocks(text, block_bytes) == whole,
                    "blocks of {block_bytes} bytes"
                );
            }
        }
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
        assert_eq!(check_dir(dir.path()).map(|c| c.changes), Ok(demo.len() as u64));
        let mut read: Vec<Change> = Vec::new();
        read_dir(dir.path(), |changes| {
            read.extend(changes.into_iter().map(|s| s.change));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(read, demo);
    }

    #[test]
    fn the_check_reports_per_file_the_clusters_whose_country_came_from_their_sites() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "clusters.csv",
            "id,name,country\nsz,Suzhou,\nsplit,Split,\nde,Given,DE\n",
        );
        write(
            dir.path(),
            "sites.csv",
            "id,cluster_id,lat,lon\nsz-1,sz,31.30,120.58\nsplit-1,split,22.54,114.06\nsplit-2,split,34.69,135.50\nde-1,de,31.30,120.58\n",
        );
        let checked = check_dir(dir.path()).unwrap();
        assert_eq!(
            checked.home_report(),
            [
                "clusters.csv: 1 clusters without a country take it from their sites: sz CN",
                "clusters.csv: 1 clusters without a country have none from their sites either: split (sites in CN and JP)",
            ]
        );
    }

    /// The second pass hands a large directory over in several parts, in
    /// file order, each change with its own line, and stops when told.
    #[test]
    fn a_large_directory_is_read_part_by_part_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let actors = 20_000;
        let mut text = String::from("id,kind\n");
        for i in 0..actors {
            text.push_str(&format!("actor-{i},firm\n"));
        }
        write(dir.path(), "actors.csv", &text);
        let mut text = String::from("source,target,kind\n");
        let links = 300_000; // about 10 MB: several windows of parts
        for i in 0..links {
            text.push_str(&format!("actor-{},actor-{},supply\n", i % actors, (i * 7 + 1) % actors));
        }
        write(dir.path(), "links.csv", &text);
        assert_eq!(check_dir(dir.path()).map(|c| c.changes), Ok((actors + links) as u64));

        let mut parts = 0;
        let mut read: Vec<SourcedChange> = Vec::new();
        read_dir(dir.path(), |changes| {
            parts += 1;
            read.extend(changes);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(parts > 2, "{parts} parts");
        assert_eq!(read.len(), actors + links);
        for (i, sourced) in read[actors..].iter().enumerate() {
            assert_eq!(
                sourced.origin,
                Origin {
                    file: "links.csv",
                    line: i as u64 + 2
                }
            );
            let Change::UpsertLink(link) = &sourced.change else {
                panic!("a link")
            };
            assert_eq!(&*link.source, format!("actor-{}", i % actors));
        }

        // A sink that breaks after the first part gets no more.
        let mut calls = 0;
        read_dir(dir.path(), |_| {
            calls += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(calls, 1);
    }
}
