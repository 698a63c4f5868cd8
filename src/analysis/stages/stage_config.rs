//! The weights, thresholds and smile-curve values of the stage analyses
//! (AssessStage, DetectVirtualIntegration, CoreFirms, Upgrading). The server
//! reads them from a TOML file (`--config`); a request can override single
//! values by their dotted name ("thresholds.virtual", "smile.design").
//! `docs/stages.md` gives the reason for every default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Segment;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageConfig {
    pub thresholds: Thresholds,
    pub regional: RegionalWeights,
    pub global: GlobalWeights,
    #[serde(rename = "virtual")]
    pub virtual_integration: VirtualWeights,
    pub smile: SmileCurve,
    pub places: PlaceSettings,
    pub detection: DetectionSettings,
    pub core_firms: CoreFirmSettings,
    pub upgrading: UpgradingSettings,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpgradingSettings {
    /// Functional upgrading: the mean smile value of the members' segments
    /// rises by at least this much.
    pub min_value_gain: f64,
    /// Process upgrading: the median revenue per employee grows by at least
    /// this share.
    pub min_productivity_growth: f64,
    /// Chain upgrading: a new industry is related when its proximity to one
    /// of the cluster's industries before, in the industry space of every
    /// cluster then, is at least this (docs/relatedness.md).
    pub min_proximity: f64,
}

impl Default for UpgradingSettings {
    fn default() -> Self {
        UpgradingSettings {
            min_value_gain: 0.05,
            min_productivity_growth: 0.1,
            min_proximity: 0.25,
        }
    }
}

/// A stage is a candidate when its score reaches its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub regional: f64,
    pub global: f64,
    #[serde(rename = "virtual")]
    pub virtual_integration: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            regional: 0.5,
            global: 0.5,
            virtual_integration: 0.5,
        }
    }
}

/// REGIONAL_INTEGRATION: a weighted mean of its factors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionalWeights {
    pub internal_share: f64,
    pub completeness: f64,
    pub specialisation: f64,
    pub locality: f64,
    pub hub_and_spoke: f64,
    /// The stage needs at least this much of the value chain inside the cluster.
    pub min_completeness: f64,
}

impl Default for RegionalWeights {
    fn default() -> Self {
        RegionalWeights {
            internal_share: 0.3,
            completeness: 0.3,
            specialisation: 0.1,
            locality: 0.2,
            hub_and_spoke: 0.1,
            min_completeness: 0.5,
        }
    }
}

/// GLOBAL_VALUE_CHAIN: a weighted mean of its factors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalWeights {
    pub foreign_embedding: f64,
    pub foreign_capital: f64,
    pub high_value: f64,
    /// The foreign share of ties at which embedding counts as full.
    pub foreign_saturation: f64,
    /// The share of enterprises with foreign capital at which it counts as full.
    pub foreign_capital_saturation: f64,
    /// Gate: at least this share of the cluster's ties go abroad.
    pub min_foreign_share: f64,
}

impl Default for GlobalWeights {
    fn default() -> Self {
        GlobalWeights {
            foreign_embedding: 0.5,
            foreign_capital: 0.2,
            high_value: 0.3,
            foreign_saturation: 0.5,
            foreign_capital_saturation: 0.25,
            min_foreign_share: 0.3,
        }
    }
}

/// VIRTUAL_INTEGRATION: gates on each necessary condition, then the
/// geometric mean of four factors (see `virtual_integration`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualWeights {
    /// The online share of the joining ties at which the virtual factor counts as full.
    pub virtual_saturation: f64,
    /// Gate: at least this online share of the ties joining the places.
    pub min_virtual_share: f64,
    /// Gate: ties between places at least this share of what the
    /// configuration model on the places' own ties gives.
    pub min_interaction: f64,
    /// Gate: at least this distinctness of the places' segment mixes.
    pub min_distinctness: f64,
    /// Gate: at most this share of random reassignments of the members to
    /// the places as distinct as the real ones.
    pub max_specialisation_p: f64,
    /// Gate: the places together perform at least this share of the value
    /// chain, final customers included.
    pub min_coverage: f64,
}

impl Default for VirtualWeights {
    fn default() -> Self {
        VirtualWeights {
            virtual_saturation: 0.4,
            min_virtual_share: 0.2,
            min_interaction: 0.3,
            min_distinctness: 0.3,
            max_specialisation_p: 0.001,
            min_coverage: 0.5,
        }
    }
}

/// The value of each value-chain segment, in [0, 1]: the smile curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmileCurve {
    pub design: f64,
    pub product_development: f64,
    pub manufacturing: f64,
    pub marketing: f64,
    pub sales: f64,
    pub consumption: f64,
    pub after_sales_service: f64,
    pub recycling: f64,
}

impl Default for SmileCurve {
    fn default() -> Self {
        SmileCurve {
            design: 1.0,
            product_development: 0.9,
            manufacturing: 0.2,
            marketing: 0.8,
            sales: 0.6,
            consumption: 0.5,
            after_sales_service: 0.7,
            recycling: 0.4,
        }
    }
}

impl SmileCurve {
    /// The mean value of a segment mix (members performing each segment);
    /// 0 for an empty mix.
    pub fn mean_value(&self, mix: &[f64; 8]) -> f64 {
        let performances: f64 = mix.iter().sum();
        if performances == 0.0 {
            return 0.0;
        }
        Segment::ALL
            .iter()
            .map(|s| mix[*s as usize] * self.value(*s))
            .sum::<f64>()
            / performances
    }

    pub fn value(&self, segment: Segment) -> f64 {
        match segment {
            Segment::Design => self.design,
            Segment::ProductDevelopment => self.product_development,
            Segment::Manufacturing => self.manufacturing,
            Segment::Marketing => self.marketing,
            Segment::Sales => self.sales,
            Segment::Consumption => self.consumption,
            Segment::AfterSalesService => self.after_sales_service,
            Segment::Recycling => self.recycling,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlaceSettings {
    /// Sites of a cluster closer than this are one place.
    pub colocation_km: f64,
}

impl Default for PlaceSettings {
    fn default() -> Self {
        PlaceSettings { colocation_km: 1.0 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionSettings {
    /// A platform actor joins two places when tied to at least this many
    /// members at each.
    pub min_platform_members: f64,
    /// Two places of different clusters are a candidate pair for a whole
    /// only with at least this many ties between their members: one or two
    /// ties are what chance gives between any two places, and places that
    /// small could not pass the permutation test anyway.
    pub min_pair_ties: f64,
    /// A whole across clusters has at most this many places (docs/stages.md,
    /// "Wholes across clusters"): a region's chain, not a country.
    pub max_parts: f64,
    /// The search for wholes across clusters reads at most this many places
    /// from each place it starts at, so a national platform tied to members
    /// everywhere bounds the work.
    pub max_search_places: f64,
}

impl Default for DetectionSettings {
    fn default() -> Self {
        DetectionSettings {
            min_platform_members: 2.0,
            min_pair_ties: 3.0,
            max_parts: 12.0,
            max_search_places: 500.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreFirmSettings {
    /// A core firm reaches at least this share of its cluster's members by
    /// supply paths (upstream or downstream).
    pub min_reach: f64,
}

impl Default for CoreFirmSettings {
    fn default() -> Self {
        CoreFirmSettings { min_reach: 0.3 }
    }
}

/// A bad setting: its dotted name and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadSetting {
    pub name: String,
    pub message: String,
}

impl StageConfig {
    /// Reads a TOML file's text; missing values keep their defaults.
    pub fn from_toml(text: &str) -> Result<StageConfig, BadSetting> {
        let config: StageConfig = toml::from_str(text).map_err(|e| BadSetting {
            name: "config".into(),
            message: e.message().to_string(),
        })?;
        config.validated()
    }

    /// This config with single values replaced, by dotted name.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, f64>) -> Result<StageConfig, BadSetting> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut tree = toml::Value::try_from(self).map_err(|e| BadSetting {
            name: "config".into(),
            message: e.to_string(),
        })?;
        for (name, value) in overrides {
            let unknown = || BadSetting {
                name: name.clone(),
                message: "is not a setting (see docs/stages.md for the names)".into(),
            };
            let (section, key) = name.split_once('.').ok_or_else(unknown)?;
            let slot = tree
                .get_mut(section)
                .and_then(|s| s.get_mut(key))
                .filter(|v| v.is_float())
                .ok_or_else(unknown)?;
            *slot = toml::Value::Float(*value);
        }
        let config: StageConfig = tree.try_into().map_err(|e: toml::de::Error| BadSetting {
            name: "config".into(),
            message: e.message().to_string(),
        })?;
        config.validated()
    }

    /// Checks every value's range.
    pub fn validated(self) -> Result<StageConfig, BadSetting> {
        let tree = toml::Value::try_from(&self).map_err(|e| BadSetting {
            name: "config".into(),
            message: e.to_string(),
        })?;
        let Some(sections) = tree.as_table() else {
            return Ok(self);
        };
        for (section, values) in sections {
            for (key, value) in values.as_table().into_iter().flatten() {
                let name = format!("{section}.{key}");
                let v = value.as_float().unwrap_or(f64::NAN);
                // Unit-interval settings: thresholds, smile values, shares and confidences.
                let unit = matches!(section.as_str(), "thresholds" | "smile")
                    || matches!(
                        key.as_str(),
                        "min_completeness"
                            | "foreign_saturation"
                            | "foreign_capital_saturation"
                            | "virtual_saturation"
                            | "min_reach"
                            | "min_foreign_share"
                            | "min_virtual_share"
                            | "min_distinctness"
                            | "max_specialisation_p"
                            | "min_coverage"
                            | "min_proximity"
                    );
                let ok = if unit {
                    (0.0..=1.0).contains(&v)
                } else {
                    v.is_finite() && v >= 0.0
                };
                if !ok {
                    let range = if unit { "[0, 1]" } else { "[0, ∞)" };
                    return Err(BadSetting {
                        name,
                        message: format!("{v} is outside {range}"),
                    });
                }
            }
        }
        for (name, v) in [
            ("global.foreign_saturation", self.global.foreign_saturation),
            (
                "global.foreign_capital_saturation",
                self.global.foreign_capital_saturation,
            ),
            (
                "virtual.virtual_saturation",
                self.virtual_integration.virtual_saturation,
            ),
        ] {
            if v == 0.0 {
                return Err(BadSetting {
                    name: name.into(),
                    message: "must be above 0".into(),
                });
            }
        }
        Ok(self)
    }

    /// The config as TOML, for `clusternet config` and the docs.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sets_some_values_and_the_rest_keep_their_defaults() {
        let config = StageConfig::from_toml("[thresholds]\nvirtual = 0.6\n[smile]\nmanufacturing = 0.1\n").unwrap();
        assert_eq!(config.thresholds.virtual_integration, 0.6);
        assert_eq!(config.smile.manufacturing, 0.1);
        assert_eq!(config.regional, RegionalWeights::default());
    }

    #[test]
    fn the_defaults_round_trip_through_toml() {
        let config = StageConfig::default();
        assert_eq!(StageConfig::from_toml(&config.to_toml()).unwrap(), config);
    }

    #[test]
    fn overrides_replace_single_values_by_dotted_name() {
        let overrides = BTreeMap::from([
            ("thresholds.regional".to_string(), 0.7),
            ("smile.design".to_string(), 0.9),
        ]);
        let config = StageConfig::default().with_overrides(&overrides).unwrap();
        assert_eq!(config.thresholds.regional, 0.7);
        assert_eq!(config.smile.design, 0.9);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |name: &str, value: f64| {
            StageConfig::default()
                .with_overrides(&BTreeMap::from([(name.to_string(), value)]))
                .unwrap_err()
                .name
        };
        assert_eq!(bad("thresholds.virtual", 1.5), "thresholds.virtual");
        assert_eq!(bad("regional.locality", -1.0), "regional.locality");
        assert_eq!(bad("virtual.max_specialisation_p", 1.5), "virtual.max_specialisation_p");
        assert_eq!(bad("smile.teleportation", 0.5), "smile.teleportation");
        assert_eq!(bad("nonsense", 0.5), "nonsense");
        assert_eq!(
            StageConfig::from_toml("[regional]\nlocallity = 1.0").unwrap_err().name,
            "config"
        );
    }
}
