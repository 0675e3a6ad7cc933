//! Segments: the members an operator picks out, by points, a reward they can afford,
//! inactivity, join date, channel or locale. A [`SegmentFilter`] is parsed once from
//! `name=value` pairs (the admin API's query and the command line share this parser, so both
//! read a filter the same way) and is then a plain value a store can evaluate while it scans.
//! Every criterion given must hold (AND); no criterion admits every member.
//!
//! Dates: `joined_after` and `joined_before` take an RFC 3339 date-time
//! (`2024-05-01T09:30:00+02:00`) or a plain date (`2024-05-01`), which means 00:00 UTC of that
//! day. `joined_after` keeps members who joined at or after that instant, `joined_before`
//! those who joined strictly before it, so `joined_after=2024-05-01&joined_before=2024-06-01`
//! is May, and consecutive months neither overlap nor leave a gap.

use super::member_stats::MemberStats;
use super::{Catalogue, Channel, Member, Points};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::fmt;

/// The filter parameters, as the admin API's query and the command line name them.
pub const PARAMETERS: [&str; 8] = [
    "min_points",
    "max_points",
    "can_redeem",
    "inactive_days",
    "joined_after",
    "joined_before",
    "channel",
    "locale",
];

/// The longest inactivity a filter may ask about: a hundred years.
const MAX_INACTIVE_DAYS: i64 = 36_500;

/// Which members a segment holds. `Default` admits everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentFilter {
    pub min_points: Option<Points>,
    pub max_points: Option<Points>,
    /// `can_redeem`: the reward's id and its cost; a balance of at least the cost is in.
    pub can_redeem: Option<(String, Points)>,
    /// `inactive_days=N`, as the instant N days before the filter was parsed: a member whose
    /// last ledger entry is older (or who has none) is in.
    pub inactive_since: Option<DateTime<Utc>>,
    /// Inclusive.
    pub joined_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub joined_before: Option<DateTime<Utc>>,
    pub channel: Option<Channel>,
    pub locale: Option<LocaleFilter>,
}

/// A parameter that cannot be read; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{parameter}`: {problem}")]
pub struct FilterError {
    pub parameter: String,
    pub problem: String,
}

fn bad(parameter: &str, problem: impl Into<String>) -> FilterError {
    FilterError {
        parameter: parameter.to_owned(),
        problem: problem.into(),
    }
}

impl SegmentFilter {
    /// Reads `pairs` (names from [`PARAMETERS`]); `catalogue` resolves `can_redeem`, `now`
    /// anchors `inactive_days`. A name given twice, an empty value, an unknown name or reward
    /// is an error naming the parameter.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        catalogue: &Catalogue,
        now: DateTime<Utc>,
    ) -> Result<SegmentFilter, FilterError> {
        let mut f = SegmentFilter::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            let Some(known) = PARAMETERS.iter().copied().find(|p| *p == name) else {
                return Err(unknown_parameter(name, &[]));
            };
            if seen.contains(&known) {
                return Err(bad(known, "given more than once"));
            }
            seen.push(known);
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(known, "has no value"));
            }
            match known {
                "min_points" => f.min_points = Some(points(known, value)?),
                "max_points" => f.max_points = Some(points(known, value)?),
                "can_redeem" => {
                    let reward = catalogue
                        .get(value)
                        .ok_or_else(|| bad(known, unknown_reward(value, catalogue)))?;
                    f.can_redeem = Some((reward.id.clone(), reward.points));
                }
                "inactive_days" => {
                    let days = value
                        .parse::<i64>()
                        .ok()
                        .filter(|d| (1..=MAX_INACTIVE_DAYS).contains(d))
                        .ok_or_else(|| {
                            bad(
                                known,
                                format!(
                                    "must be a whole number of days from 1 to {MAX_INACTIVE_DAYS}"
                                ),
                            )
                        })?;
                    f.inactive_since = Some(now - Duration::days(days));
                }
                "joined_after" => f.joined_after = Some(instant(known, value)?),
                "joined_before" => f.joined_before = Some(instant(known, value)?),
                "channel" => f.channel = Some(channel(known, value)?),
                "locale" => {
                    f.locale = Some(LocaleFilter::parse(value).ok_or_else(|| {
                        bad(
                            known,
                            "must be a language (`de`) or a language and region (`de_DE`)",
                        )
                    })?);
                }
                _ => unreachable!("every name in PARAMETERS is handled"),
            }
        }
        if let (Some(min), Some(max)) = (f.min_points, f.max_points) {
            if min > max {
                return Err(bad(
                    "min_points",
                    format!("{min} is above max_points {max}"),
                ));
            }
        }
        if let (Some(after), Some(before)) = (f.joined_after, f.joined_before) {
            if after >= before {
                return Err(bad("joined_after", "is not before joined_before"));
            }
        }
        Ok(f)
    }

    /// The criteria a member record and its balance decide: a store checks these before it
    /// reads the member's ledger.
    pub fn admits_member(&self, member: &Member, points: Points) -> bool {
        self.min_points.is_none_or(|min| points >= min)
            && self.max_points.is_none_or(|max| points <= max)
            && self
                .can_redeem
                .as_ref()
                .is_none_or(|(_, cost)| points >= *cost)
            && self.joined_after.is_none_or(|t| member.joined_at >= t)
            && self.joined_before.is_none_or(|t| member.joined_at < t)
            && self.channel.is_none_or(|c| member.identity.channel == c)
            && self
                .locale
                .as_ref()
                .is_none_or(|l| member.locale.as_deref().is_some_and(|m| l.admits(m)))
    }

    /// The criteria that need the ledger's figures.
    pub fn admits_stats(&self, stats: &MemberStats) -> bool {
        self.inactive_since
            .is_none_or(|since| stats.last_activity_at.is_none_or(|last| last < since))
    }

    /// Whether the ledger's figures are needed at all (beyond the balance check).
    pub fn needs_stats(&self) -> bool {
        self.inactive_since.is_some()
    }
}

/// The error for a parameter nobody knows, with the nearest of [`PARAMETERS`] and `also`
/// (a caller's own parameters, such as a page size) when one is near.
pub fn unknown_parameter(name: &str, also: &[&str]) -> FilterError {
    let known = || PARAMETERS.iter().chain(also).copied();
    let nearest = known()
        .map(|p| (strsim::jaro_winkler(p, name), p))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(score, _)| *score > 0.8);
    let problem = match nearest {
        Some((_, p)) => format!("unknown parameter; did you mean `{p}`?"),
        None => format!(
            "unknown parameter; known: {}",
            known().collect::<Vec<_>>().join(", ")
        ),
    };
    bad(name, problem)
}

fn unknown_reward(id: &str, catalogue: &Catalogue) -> String {
    let known: Vec<&str> = catalogue.all().iter().map(|r| r.id.as_str()).collect();
    format!(
        "no reward `{id}` in the catalogue (known: {})",
        known.join(", ")
    )
}

fn points(name: &str, value: &str) -> Result<Points, FilterError> {
    value
        .parse::<u64>()
        .map(Points)
        .map_err(|_| bad(name, "must be a whole number of points, 0 or more"))
}

/// An RFC 3339 date-time, or a plain date read as 00:00 UTC.
fn instant(name: &str, value: &str) -> Result<DateTime<Utc>, FilterError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    value
        .parse::<NaiveDate>()
        .ok()
        .filter(|_| value.len() == 10)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            bad(
                name,
                "must be an RFC 3339 date (2024-05-01) or date-time (2024-05-01T09:30:00Z)",
            )
        })
}

fn channel(name: &str, value: &str) -> Result<Channel, FilterError> {
    [Channel::Messenger, Channel::Manychat, Channel::Terminal]
        .into_iter()
        .find(|c| c.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| bad(name, "must be messenger, manychat or terminal"))
}

/// `de` admits every German locale (`de_DE`, `de-AT`); `de_DE` only that one. Case and the
/// separator (`_` or `-`) do not matter: platforms write both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocaleFilter {
    language: String,
    region: Option<String>,
}

impl LocaleFilter {
    pub fn parse(raw: &str) -> Option<LocaleFilter> {
        let (language, region) = split_locale(raw)?;
        Some(LocaleFilter { language, region })
    }

    /// Whether a member's stored locale is one this filter asks for.
    pub fn admits(&self, locale: &str) -> bool {
        split_locale(locale).is_some_and(|(language, region)| {
            language == self.language
                && self
                    .region
                    .as_ref()
                    .is_none_or(|r| region.as_ref() == Some(r))
        })
    }
}

impl fmt::Display for LocaleFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.region {
            Some(r) => write!(f, "{}_{r}", self.language),
            None => f.write_str(&self.language),
        }
    }
}

/// `(language, region)`, lower- and upper-cased; `None` unless a 2–3 letter language,
/// optionally followed by `_` or `-` and a 2–8 character alphanumeric region or script.
fn split_locale(raw: &str) -> Option<(String, Option<String>)> {
    let mut parts = raw.trim().split(['_', '-']);
    let language = parts.next()?;
    let region = parts.next();
    if parts.next().is_some()
        || !(2..=3).contains(&language.len())
        || !language.chars().all(|c| c.is_ascii_alphabetic())
    {
        return None;
    }
    if let Some(r) = region {
        if !(2..=8).contains(&r.len()) || !r.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
    }
    Some((
        language.to_ascii_lowercase(),
        region.map(str::to_ascii_uppercase),
    ))
}

#[cfg(test)]
mod tests;
