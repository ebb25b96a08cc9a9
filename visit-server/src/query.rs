//! The query strings of `GET /visits` and `GET /stats`: strict, so a typo is a 400 rather
//! than a silent default.
//!
//! `/visits`:
//!
//! | key | values | default |
//! |---|---|---|
//! | `limit` | a decimal `u64`: the last N lines (per replica, with `scope=cluster`: at most [`CLUSTER_MAX_LIMIT`]) | every line; [`CLUSTER_DEFAULT_LIMIT`] per replica with `scope=cluster` |
//! | `format` | `text`, `json`, `csv` | `text` |
//! | `scope` | `local` (this replica's journal), `cluster` (every replica's) | `local` |
//!
//! `/stats`: `scope`, as above, and `format`: `json` (the default) or `csv`.
//!
//! Unknown keys, a key given twice, a key without `=value`, a bad value or a bad
//! percent-escape are errors. Empty pairs (`?&limit=3&`) are allowed. Keys and values are
//! percent-decoded and `+` means a space, as in HTML forms.

use std::fmt;

/// How `/visits` renders the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The journal's lines, byte for byte.
    #[default]
    Text,
    /// A JSON array of `{"time": ..., "ip": ...}`.
    Json,
    /// RFC 4180 rows `time,ip` (`replica,time,ip` for the cluster), see `csv`.
    Csv,
}

/// How `/stats` renders the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsFormat {
    /// The JSON document of `stats`.
    #[default]
    Json,
    /// RFC 4180 rows `day,replica,count`, see `csv`.
    Csv,
}

/// Whose visits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// This replica's journal only. Peers are always asked with this scope, so they never fan
    /// out in turn.
    #[default]
    Local,
    /// Every replica's, gathered from the peers (see `cluster`).
    Cluster,
}

/// Lines per replica that `/visits?scope=cluster` returns without `limit`.
pub const CLUSTER_DEFAULT_LIMIT: u64 = 1000;

/// The largest `limit` accepted with `scope=cluster`: peers' answers are held in memory.
pub const CLUSTER_MAX_LIMIT: u64 = 10_000;

/// A parsed `/visits` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VisitsQuery {
    /// Only the last `limit` lines (of each replica, for the cluster scope).
    pub limit: Option<u64>,
    /// The rendering.
    pub format: Format,
    /// Whose visits.
    pub scope: Scope,
}

/// A parsed `/stats` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsQuery {
    /// Whose visits.
    pub scope: Scope,
    /// The rendering.
    pub format: StatsFormat,
}

/// Why a query was refused; its text is the 400 response's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryError {}

impl VisitsQuery {
    /// Parses the part of the URL after `?` (empty if there is none).
    ///
    /// # Errors
    ///
    /// [`QueryError`] naming the first problem.
    pub fn parse(query: &str) -> Result<VisitsQuery, QueryError> {
        let mut q = VisitsQuery::default();
        each_pair(query, &["limit", "format", "scope"], |key, value| {
            match key {
                "limit" => {
                    // `u64::from_str` accepts a leading `+`; a query parameter should not.
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(QueryError(format!(
                            "limit must be a whole number, not {value:?}"
                        )));
                    }
                    let n = value
                        .parse()
                        .map_err(|_| QueryError(format!("limit {value} is too large")))?;
                    q.limit = Some(n);
                }
                "format" => {
                    q.format = match value {
                        "text" => Format::Text,
                        "json" => Format::Json,
                        "csv" => Format::Csv,
                        _ => {
                            return Err(QueryError(format!(
                                "format must be text, json or csv, not {value:?}"
                            )));
                        }
                    }
                }
                _ => q.scope = parse_scope(value)?,
            }
            Ok(())
        })?;
        if q.scope == Scope::Cluster && q.limit.is_some_and(|n| n > CLUSTER_MAX_LIMIT) {
            return Err(QueryError(format!(
                "limit is at most {CLUSTER_MAX_LIMIT} per replica with scope=cluster"
            )));
        }
        Ok(q)
    }

    /// How many lines each replica contributes to a cluster view.
    pub fn per_replica_limit(&self) -> u64 {
        self.limit.unwrap_or(CLUSTER_DEFAULT_LIMIT)
    }
}

impl StatsQuery {
    /// Parses the part of the URL after `?` (empty if there is none).
    ///
    /// # Errors
    ///
    /// [`QueryError`] naming the first problem.
    pub fn parse(query: &str) -> Result<StatsQuery, QueryError> {
        let mut q = StatsQuery::default();
        each_pair(query, &["scope", "format"], |key, value| {
            match key {
                "scope" => q.scope = parse_scope(value)?,
                _ => {
                    q.format = match value {
                        "json" => StatsFormat::Json,
                        "csv" => StatsFormat::Csv,
                        _ => {
                            return Err(QueryError(format!(
                                "format must be json or csv, not {value:?}"
                            )));
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(q)
    }
}

fn parse_scope(value: &str) -> Result<Scope, QueryError> {
    match value {
        "local" => Ok(Scope::Local),
        "cluster" => Ok(Scope::Cluster),
        _ => Err(QueryError(format!(
            "scope must be local or cluster, not {value:?}"
        ))),
    }
}

/// Calls `f` with each decoded pair, refusing keys not in `known` and keys given twice.
fn each_pair(
    query: &str,
    known: &[&str],
    mut f: impl FnMut(&str, &str) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in pairs(query)? {
        if seen.contains(&key) {
            return Err(QueryError(format!("{key} given twice")));
        }
        if !known.contains(&key.as_str()) {
            return Err(QueryError(format!(
                "unknown parameter {key:?} (known: {})",
                known.join(", ")
            )));
        }
        f(&key, &value)?;
        seen.push(key);
    }
    Ok(())
}

/// Splits and decodes `a=1&b=2`.
fn pairs(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| QueryError(format!("{:?} needs a value", decode_lossy(pair))))?;
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// Percent-decodes a query component.
fn decode(s: &str) -> Result<String, QueryError> {
    let bad = || QueryError(format!("bad percent-escape in {s:?}"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError(format!("{s:?} is not UTF-8 once decoded")))
}

fn decode_lossy(s: &str) -> String {
    decode(s).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> VisitsQuery {
        VisitsQuery::parse(q).unwrap_or_else(|e| panic!("{q:?}: {e}"))
    }

    fn err(q: &str) -> String {
        VisitsQuery::parse(q).unwrap_err().0
    }

    #[test]
    fn accepts_limit_and_format() {
        assert_eq!(ok(""), VisitsQuery::default());
        assert_eq!(ok("limit=3").limit, Some(3));
        assert_eq!(ok("limit=0").limit, Some(0));
        assert_eq!(ok("format=json").format, Format::Json);
        assert_eq!(ok("format=csv").format, Format::Csv);
        assert_eq!(
            ok("&format=text&limit=18446744073709551615&"),
            VisitsQuery {
                limit: Some(u64::MAX),
                format: Format::Text,
                scope: Scope::Local,
            }
        );
        assert_eq!(ok("f%6Frmat=%6Ason").format, Format::Json);
    }

    #[test]
    fn scope_and_its_limits() {
        assert_eq!(ok("scope=local").scope, Scope::Local);
        let q = ok("scope=cluster&format=json");
        assert_eq!((q.scope, q.format), (Scope::Cluster, Format::Json));
        assert_eq!(q.per_replica_limit(), CLUSTER_DEFAULT_LIMIT);
        assert_eq!(ok("scope=cluster&limit=3").per_replica_limit(), 3);
        assert_eq!(
            ok(&format!("scope=cluster&limit={CLUSTER_MAX_LIMIT}")).limit,
            Some(CLUSTER_MAX_LIMIT)
        );
        assert!(err(&format!("limit={}&scope=cluster", CLUSTER_MAX_LIMIT + 1)).contains("at most"));
        assert!(err("scope=global").contains("local or cluster"));
        assert!(err("scope=Cluster").contains("local or cluster"));
        assert!(err("scope=local&scope=cluster").contains("given twice"));
        assert_eq!(StatsQuery::parse("").unwrap().scope, Scope::Local);
        assert_eq!(
            StatsQuery::parse("scope=cluster").unwrap().scope,
            Scope::Cluster
        );
        assert!(
            StatsQuery::parse("limit=1")
                .unwrap_err()
                .0
                .contains("unknown parameter")
        );
        let q = StatsQuery::parse("format=csv&scope=cluster").unwrap();
        assert_eq!((q.scope, q.format), (Scope::Cluster, StatsFormat::Csv));
        assert_eq!(StatsQuery::parse("").unwrap().format, StatsFormat::Json);
        assert!(
            StatsQuery::parse("format=text")
                .unwrap_err()
                .0
                .contains("json or csv")
        );
        assert!(
            StatsQuery::parse("scope=x")
                .unwrap_err()
                .0
                .contains("local or cluster")
        );
    }

    #[test]
    fn refuses_anything_else() {
        assert!(err("limit=x").contains("whole number"));
        assert!(err("limit=-1").contains("whole number"));
        assert!(err("limit=+1").contains("whole number"));
        assert!(err("limit=").contains("whole number"));
        assert!(err("limit=18446744073709551616").contains("too large"));
        assert!(err("limit=1&limit=2").contains("given twice"));
        assert!(err("format=xml").contains("text, json or csv"));
        assert!(err("format=JSON").contains("text, json or csv"));
        assert!(err("bogus=1").contains("unknown parameter \"bogus\""));
        assert!(err("limit").contains("needs a value"));
        assert!(err("limit=%zz").contains("percent-escape"));
        assert!(err("limit=%4").contains("percent-escape"));
        assert!(err("format=%ff").contains("not UTF-8"));
    }
}
