//! The data model: clusters and their sites, actors, links between actors and
//! explicit links between clusters or sites. Plain types with public fields;
//! `validate` checks what can be checked on one item alone. Checks against the
//! stored network (does the actor exist?) live in `network`.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Identifiers are shared, immutable strings: one allocation per id however
/// many indexes hold it.
pub type Id = Arc<str>;

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest name accepted (actors, clusters, sites), in bytes: a firm's
/// registered name with its translation fits many times over.
pub const MAX_NAME_LEN: usize = 1_024;
/// Longest region or industry code accepted, in bytes.
pub const MAX_CODE_LEN: usize = 128;
/// Most sites one cluster may have: a cluster is a handful of parks; a
/// thousand is far past any real one.
pub const MAX_SITES: usize = 1_000;
/// Most clusters one actor may belong to.
pub const MAX_CLUSTERS_PER_ACTOR: usize = 256;

/// Checks a free-text field's length.
fn validate_text(field: &str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; at most {max} allowed", text.len()),
        ));
    }
    Ok(())
}

/// Checks a list's length.
fn validate_count(field: &str, count: usize, max: usize) -> Result<()> {
    if count > max {
        return Err(Error::invalid(
            field,
            format!("has {count} entries; at most {max} allowed"),
        ));
    }
    Ok(())
}

/// Checks an identifier: non-empty, at most [`MAX_ID_LEN`] bytes, no control
/// characters (the store uses NUL as a key separator) and no surrounding spaces.
pub fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; at most {MAX_ID_LEN} allowed", id.len()),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    if id.trim() != id {
        return Err(Error::invalid(field, "must not start or end with whitespace"));
    }
    Ok(())
}

/// A calendar date, stored as days since 1970-01-01 (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(pub i32);

impl Date {
    /// The date of a year, month (1-12) and day (1-31), if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = if month <= 2 { year - 1 } else { year } as i64;
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        i32::try_from(era * 146_097 + doe - 719_468).ok().map(Date)
    }

    /// The (year, month, day) of this date.
    pub fn to_ymd(self) -> (i32, u32, u32) {
        // Howard Hinnant's civil_from_days.
        let z = self.0 as i64 + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        (year, month, day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

impl FromStr for Date {
    type Err = String;

    /// Parses `YYYY-MM-DD` (years 0000-9999).
    fn from_str(text: &str) -> std::result::Result<Date, String> {
        let bad = || format!("'{text}' is not a date of the form YYYY-MM-DD");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let number = |range: std::ops::Range<usize>| -> std::result::Result<u32, String> {
            let part = &text[range];
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        Date::from_ymd(year as i32, month, day).ok_or_else(|| format!("'{text}' is not a calendar date"))
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// When an actor or link exists; both ends inclusive, `None` means open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    pub from: Option<Date>,
    pub to: Option<Date>,
}

impl Validity {
    pub fn contains(&self, date: Date) -> bool {
        self.from.is_none_or(|from| from <= date) && self.to.is_none_or(|to| date <= to)
    }

    fn validate(&self) -> Result<()> {
        match (self.from, self.to) {
            (Some(from), Some(to)) if to < from => {
                Err(Error::invalid("valid_to", format!("{to} is before valid_from {from}")))
            }
            _ => Ok(()),
        }
    }
}

/// Declares a field-less enum with its stable wire name, used by the CSV format
/// and in messages, and a case-insensitive parser.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> std::result::Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(text.trim()))
                    .ok_or_else(|| {
                        let names: Vec<_> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        format!("unknown value '{}'; expected one of {}", text, names.join(", "))
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// What an actor is: a firm or one of the related institutions.
    ActorKind {
        Firm = "FIRM",
        /// The lead firm of a hub-and-spoke cluster.
        CoreFirm = "CORE_FIRM",
        University = "UNIVERSITY",
        ResearchInstitute = "RESEARCH_INSTITUTE",
        Government = "GOVERNMENT",
        Intermediary = "INTERMEDIARY",
        Platform = "PLATFORM",
        Financial = "FINANCIAL",
        Customer = "CUSTOMER",
    }
);

impl ActorKind {
    /// Firms, as opposed to the related institutions.
    pub fn is_enterprise(self) -> bool {
        matches!(self, ActorKind::Firm | ActorKind::CoreFirm)
    }
}

named_enum!(
    /// The segments of the global value chain, in the article's order.
    Segment {
        Design = "DESIGN",
        ProductDevelopment = "PRODUCT_DEVELOPMENT",
        Manufacturing = "MANUFACTURING",
        Marketing = "MARKETING",
        Sales = "SALES",
        Consumption = "CONSUMPTION",
        AfterSalesService = "AFTER_SALES_SERVICE",
        Recycling = "RECYCLING",
    }
);

named_enum!(
    /// Kinds of link between actors.
    LinkKind {
        /// Supplier to customer.
        Supply = "SUPPLY",
        Cooperation = "COOPERATION",
        /// Investor to investee.
        Investment = "INVESTMENT",
        /// Owner to owned.
        Ownership = "OWNERSHIP",
        /// Membership of or exchange over an information platform.
        Platform = "PLATFORM",
        Informal = "INFORMAL",
    }
);

named_enum!(
    /// How a tie is carried.
    Channel {
        Physical = "PHYSICAL",
        Virtual = "VIRTUAL",
    }
);

named_enum!(
    /// Kinds of explicit tie between clusters or sites.
    ClusterLinkKind {
        /// A physical corridor such as a metro line.
        Transport = "TRANSPORT",
        /// A shared information platform.
        Platform = "PLATFORM",
        Cooperation = "COOPERATION",
        Supply = "SUPPLY",
        Investment = "INVESTMENT",
    }
);

impl LinkKind {
    /// Supply, investment and ownership have a direction; the rest do not.
    pub fn is_directed(self) -> bool {
        matches!(self, LinkKind::Supply | LinkKind::Investment | LinkKind::Ownership)
    }

    /// Investment and ownership: the ties that carry capital.
    pub fn is_capital(self) -> bool {
        matches!(self, LinkKind::Investment | LinkKind::Ownership)
    }
}

impl ClusterLinkKind {
    pub fn is_directed(self) -> bool {
        matches!(self, ClusterLinkKind::Supply | ClusterLinkKind::Investment)
    }
}

/// A set of value-chain segments, one bit per segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SegmentSet(u8);

impl SegmentSet {
    pub fn insert(&mut self, segment: Segment) {
        self.0 |= 1 << segment as u8;
    }

    pub fn contains(self, segment: Segment) -> bool {
        self.0 & (1 << segment as u8) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The segments in value-chain order.
    pub fn iter(self) -> impl Iterator<Item = Segment> {
        Segment::ALL.iter().copied().filter(move |s| self.contains(*s))
    }
}

impl FromIterator<Segment> for SegmentSet {
    fn from_iter<I: IntoIterator<Item = Segment>>(iter: I) -> Self {
        let mut set = SegmentSet::default();
        for segment in iter {
            set.insert(segment);
        }
        set
    }
}

/// A park or location of a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub id: Id,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: Id,
    pub name: String,
    pub region: String,
    /// Where the cluster is: the home country its ties abroad are told from
    /// (not a vote of its members' registrations). None when unknown.
    pub country: Option<Country>,
    pub industry: String,
    pub sites: Vec<Site>,
}

impl Cluster {
    /// Where to draw the cluster on a map: the mean latitude and longitude
    /// of its sites, or `None` when it has none.
    pub fn centre(&self) -> Option<(f64, f64)> {
        if self.sites.is_empty() {
            return None;
        }
        let n = self.sites.len() as f64;
        let lat = self.sites.iter().map(|s| s.lat).sum::<f64>() / n;
        let lon = self.sites.iter().map(|s| s.lon).sum::<f64>() / n;
        Some((lat, lon))
    }

    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        validate_text("name", &self.name, MAX_NAME_LEN)?;
        validate_text("region", &self.region, MAX_CODE_LEN)?;
        validate_text("industry", &self.industry, MAX_CODE_LEN)?;
        validate_count("sites", self.sites.len(), MAX_SITES)?;
        // A set, not a scan of the sites before each: linear in the list.
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::with_capacity(self.sites.len());
        for (i, site) in self.sites.iter().enumerate() {
            let at = |field: &str| format!("sites[{i}].{field}");
            validate_id(&at("id"), &site.id)?;
            validate_text(&at("name"), &site.name, MAX_NAME_LEN)?;
            if !(site.lat.is_finite() && (-90.0..=90.0).contains(&site.lat)) {
                return Err(Error::invalid(
                    at("lat"),
                    format!("{} is not a latitude in [-90, 90]", site.lat),
                ));
            }
            if !(site.lon.is_finite() && (-180.0..=180.0).contains(&site.lon)) {
                return Err(Error::invalid(
                    at("lon"),
                    format!("{} is not a longitude in [-180, 180]", site.lon),
                ));
            }
            if site.id == self.id {
                return Err(Error::invalid(at("id"), "a site id must differ from its cluster's id"));
            }
            if !seen.insert(&site.id) {
                return Err(Error::invalid(at("id"), format!("site '{}' is listed twice", site.id)));
            }
        }
        Ok(())
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Country([u8; 2]);

impl Country {
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for Country {
    type Err = String;

    /// Accepts two ASCII letters in either case. Whether the code is assigned
    /// is not checked: the list changes, and user-assigned codes (XK) are used.
    fn from_str(text: &str) -> std::result::Result<Country, String> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(format!("'{text}' is not an ISO 3166-1 alpha-2 code such as CN or DE")),
        }
    }
}

/// What an actor was before a date: its industry, segments and size until
/// `until` (exclusive), back to its previous profile's `until`. The actor's
/// own record holds what it is from its last profile's `until` on, so
/// history is added without touching the present: a firm that moved from
/// manufacturing into design has a profile with MANUFACTURING until the
/// move, and DESIGN in its record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActorProfile {
    pub actor_id: Id,
    pub until: Date,
    pub industry: String,
    pub segments: SegmentSet,
    pub employees: Option<u64>,
    pub revenue: Option<f64>,
}

impl ActorProfile {
    pub fn validate(&self) -> Result<()> {
        validate_id("actor_id", &self.actor_id)?;
        validate_text("industry", &self.industry, MAX_CODE_LEN)?;
        validate_revenue(self.revenue)
    }
}

fn validate_revenue(revenue: Option<f64>) -> Result<()> {
    match revenue {
        Some(r) if !r.is_finite() || r < 0.0 => Err(Error::invalid(
            "revenue",
            format!("{r} is not a finite, non-negative amount"),
        )),
        _ => Ok(()),
    }
}

/// A firm or related institution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub id: Id,
    pub name: String,
    pub kind: ActorKind,
    pub industry: String,
    pub segments: SegmentSet,
    /// Empty for an external or global actor.
    pub cluster_ids: Vec<Id>,
    pub site_id: Option<Id>,
    pub country: Option<Country>,
    pub employees: Option<u64>,
    pub revenue: Option<f64>,
    pub validity: Validity,
}

impl Actor {
    pub fn validate(&self) -> Result<()> {
        validate_id("id", &self.id)?;
        validate_text("name", &self.name, MAX_NAME_LEN)?;
        validate_text("industry", &self.industry, MAX_CODE_LEN)?;
        validate_count("cluster_ids", self.cluster_ids.len(), MAX_CLUSTERS_PER_ACTOR)?;
        let mut seen: std::collections::HashSet<&str> =
            std::collections::HashSet::with_capacity(self.cluster_ids.len());
        for (i, cluster) in self.cluster_ids.iter().enumerate() {
            validate_id(&format!("cluster_ids[{i}]"), cluster)?;
            if !seen.insert(cluster) {
                return Err(Error::invalid(
                    format!("cluster_ids[{i}]"),
                    format!("cluster '{cluster}' is listed twice"),
                ));
            }
        }
        if let Some(site) = &self.site_id {
            validate_id("site_id", site)?;
            if self.cluster_ids.is_empty() {
                return Err(Error::invalid(
                    "site_id",
                    "an actor in no cluster cannot be at a cluster's site",
                ));
            }
        }
        validate_revenue(self.revenue)?;
        self.validity.validate()
    }
}

/// Identifies a link. Undirected kinds are stored with `source < target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkKey {
    pub source: Id,
    pub target: Id,
    pub kind: LinkKind,
}

impl LinkKey {
    /// The stored form: endpoints of an undirected link in ascending order.
    pub fn canonical(mut self) -> LinkKey {
        order_ends(self.kind.is_directed(), &mut self.source, &mut self.target);
        self
    }
}

/// A tie between two actors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub source: Id,
    pub target: Id,
    pub kind: LinkKind,
    pub channel: Channel,
    pub weight: f64,
    pub validity: Validity,
}

impl Link {
    pub fn key(&self) -> LinkKey {
        LinkKey {
            source: self.source.clone(),
            target: self.target.clone(),
            kind: self.kind,
        }
    }

    /// Checks the link and returns it in stored form.
    pub fn validated(mut self) -> Result<Link> {
        validate_ends(&self.source, &self.target, self.weight)?;
        self.validity.validate()?;
        order_ends(self.kind.is_directed(), &mut self.source, &mut self.target);
        Ok(self)
    }
}

/// Checks the ends and weight shared by links and cluster links: two valid,
/// distinct ids (no self-loops) and a finite, positive weight.
fn validate_ends(source: &Id, target: &Id, weight: f64) -> Result<()> {
    validate_id("source", source)?;
    validate_id("target", target)?;
    if source == target {
        return Err(Error::invalid(
            "target",
            format!("a link cannot join '{source}' to itself"),
        ));
    }
    if !(weight.is_finite() && weight > 0.0) {
        return Err(Error::invalid(
            "weight",
            format!("{weight} is not a finite number greater than 0"),
        ));
    }
    Ok(())
}

/// Puts the ends of an undirected tie in ascending order: its stored form.
fn order_ends(directed: bool, source: &mut Id, target: &mut Id) {
    if !directed && *target < *source {
        std::mem::swap(source, target);
    }
}

/// Identifies a cluster link. Undirected kinds are stored with `source < target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterLinkKey {
    pub source: Id,
    pub target: Id,
    pub kind: ClusterLinkKind,
}

impl ClusterLinkKey {
    pub fn canonical(mut self) -> ClusterLinkKey {
        order_ends(self.kind.is_directed(), &mut self.source, &mut self.target);
        self
    }
}

/// An explicit tie between two clusters or sites: a metro line between parks,
/// a platform two clusters share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterLink {
    /// A cluster id or a site id.
    pub source: Id,
    pub target: Id,
    pub kind: ClusterLinkKind,
    pub channel: Channel,
    pub weight: f64,
}

impl ClusterLink {
    pub fn key(&self) -> ClusterLinkKey {
        ClusterLinkKey {
            source: self.source.clone(),
            target: self.target.clone(),
            kind: self.kind,
        }
    }

    pub fn validated(mut self) -> Result<ClusterLink> {
        validate_ends(&self.source, &self.target, self.weight)?;
        order_ends(self.kind.is_directed(), &mut self.source, &mut self.target);
        Ok(self)
    }
}

/// One item of a change batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    UpsertCluster(Cluster),
    UpsertActor(Actor),
    UpsertLink(Link),
    UpsertClusterLink(ClusterLink),
    DeleteCluster { id: Id, cascade: bool },
    DeleteActor { id: Id, cascade: bool },
    DeleteLink(LinkKey),
    DeleteClusterLink(ClusterLinkKey),
    // New variants go last: stored logs name variants by position.
    UpsertActorProfile(ActorProfile),
    DeleteActorProfile { actor_id: Id, until: Date },
}

impl Change {
    /// The name of the item's field in the wire format, used in error paths.
    pub fn field_name(&self) -> &'static str {
        match self {
            Change::UpsertCluster(_) => "upsert_cluster",
            Change::UpsertActor(_) => "upsert_actor",
            Change::UpsertLink(_) => "upsert_link",
            Change::UpsertClusterLink(_) => "upsert_cluster_link",
            Change::DeleteCluster { .. } => "delete_cluster",
            Change::DeleteActor { .. } => "delete_actor",
            Change::DeleteLink(_) => "delete_link",
            Change::DeleteClusterLink(_) => "delete_cluster_link",
            Change::UpsertActorProfile(_) => "upsert_actor_profile",
            Change::DeleteActorProfile { .. } => "delete_actor_profile",
        }
    }

    /// Checks everything that can be checked on this item alone, and puts it in
    /// stored form (undirected links with ordered endpoints).
    pub fn validated(self) -> Result<Change> {
        Ok(match self {
            Change::UpsertCluster(cluster) => {
                cluster.validate()?;
                Change::UpsertCluster(cluster)
            }
            Change::UpsertActor(actor) => {
                actor.validate()?;
                Change::UpsertActor(actor)
            }
            Change::UpsertLink(link) => Change::UpsertLink(link.validated()?),
            Change::UpsertClusterLink(link) => Change::UpsertClusterLink(link.validated()?),
            Change::DeleteCluster { id, cascade } => {
                validate_id("id", &id)?;
                Change::DeleteCluster { id, cascade }
            }
            Change::DeleteActor { id, cascade } => {
                validate_id("id", &id)?;
                Change::DeleteActor { id, cascade }
            }
            Change::DeleteLink(key) => {
                validate_id("source", &key.source)?;
                validate_id("target", &key.target)?;
                Change::DeleteLink(key.canonical())
            }
            Change::DeleteClusterLink(key) => {
                validate_id("source", &key.source)?;
                validate_id("target", &key.target)?;
                Change::DeleteClusterLink(key.canonical())
            }
            Change::UpsertActorProfile(profile) => {
                profile.validate()?;
                Change::UpsertActorProfile(profile)
            }
            Change::DeleteActorProfile { actor_id, until } => {
                validate_id("actor_id", &actor_id)?;
                Change::DeleteActorProfile { actor_id, until }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_text_and_day_numbers() {
        for text in ["1970-01-01", "2000-02-29", "2024-12-31", "0001-01-01", "9999-12-31"] {
            let date: Date = text.parse().unwrap();
            assert_eq!(date.to_string(), text);
        }
        assert_eq!("1970-01-02".parse::<Date>().unwrap(), Date(1));
        assert_eq!("1969-12-31".parse::<Date>().unwrap(), Date(-1));
    }

    #[test]
    fn impossible_dates_are_rejected() {
        for text in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "yesterday",
            "2024-01-32",
        ] {
            assert!(text.parse::<Date>().is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn validity_is_inclusive_at_both_ends() {
        let validity = Validity {
            from: Some("2020-01-01".parse().unwrap()),
            to: Some("2020-12-31".parse().unwrap()),
        };
        assert!(validity.contains("2020-01-01".parse().unwrap()));
        assert!(validity.contains("2020-12-31".parse().unwrap()));
        assert!(!validity.contains("2021-01-01".parse().unwrap()));
    }

    #[test]
    fn undirected_links_are_stored_with_ordered_endpoints() {
        let link = Link {
            source: "b".into(),
            target: "a".into(),
            kind: LinkKind::Cooperation,
            channel: Channel::Physical,
            weight: 1.0,
            validity: Validity::default(),
        };
        let stored = link.clone().validated().unwrap();
        assert_eq!((&*stored.source, &*stored.target), ("a", "b"));
        let supply = Link {
            kind: LinkKind::Supply,
            ..link
        };
        let stored = supply.validated().unwrap();
        assert_eq!((&*stored.source, &*stored.target), ("b", "a"));
    }

    #[test]
    fn enum_names_parse_in_any_case() {
        assert_eq!("core_firm".parse::<ActorKind>().unwrap(), ActorKind::CoreFirm);
        assert_eq!(
            "After_Sales_Service".parse::<Segment>().unwrap(),
            Segment::AfterSalesService
        );
        assert!("REFINERY".parse::<ActorKind>().is_err());
    }
}
