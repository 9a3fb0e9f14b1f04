//! Query parameters: the run listing's filters and cursor, and a start's `?wait=`. Every
//! parameter is checked and a bad one is a 400 naming it, before anything is read or changed.

use baton_core::engine::RunStatus;
use baton_core::ids::RunId;

use super::{ApiError, MAX_WAIT_SECS};
use crate::ports::RunQuery;

/// Default page size of `GET /api/runs`.
pub const DEFAULT_LIMIT: usize = 50;
/// Largest page size of `GET /api/runs`.
pub const MAX_LIMIT: usize = 500;

/// The parameters of a query string, each name checked against the ones the route takes.
pub fn params(query: &str, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    for (name, _) in &params {
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::bad(name, format!("unknown parameter; this route takes {}", allowed.join(", "))));
        }
    }
    Ok(params)
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `GET /api/runs`'s filters and page as a store query (which asks for one run more than the
/// page holds, to know whether another page follows).
pub fn run_query(query: &str) -> Result<RunQuery, ApiError> {
    let p = params(query, &["status", "workflow", "started_after", "started_before", "limit", "cursor"])?;
    let status = get(&p, "status")
        .map(|s| match s {
            "waiting" => Ok(RunStatus::Running),
            "succeeded" => Ok(RunStatus::Succeeded),
            "failed" => Ok(RunStatus::Failed),
            "cancelled" => Ok(RunStatus::Cancelled),
            other => Err(ApiError::bad(
                "status",
                format!("`{other}` is not a status: waiting, succeeded, failed or cancelled"),
            )),
        })
        .transpose()?;
    let limit = match get(&p, "limit") {
        None => DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| ApiError::bad("limit", format!("`{l}` is not a number from 1 to {MAX_LIMIT}")))?,
    };
    Ok(RunQuery {
        status,
        workflow: get(&p, "workflow").map(str::to_owned),
        created_after: get(&p, "started_after").map(|t| time_ms("started_after", t)).transpose()?,
        created_before: get(&p, "started_before").map(|t| time_ms("started_before", t)).transpose()?,
        after: get(&p, "cursor").map(decode_cursor).transpose()?,
        limit: limit + 1,
    })
}

/// A time as RFC 3339 (`2026-12-06T18:00:00Z`) or milliseconds since the Unix epoch.
fn time_ms(field: &str, text: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text).map_err(|_| {
        ApiError::bad(field, format!("`{text}` is neither an RFC 3339 time nor milliseconds since the epoch"))
    })?;
    let since = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| ApiError::bad(field, "before 1970"))?;
    Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// The cursor after the run created at `created_at` with id `id`: opaque to clients, it names
/// the last run of the page so the next page starts right after it even while runs are added.
pub fn encode_cursor(created_at: u64, id: &RunId) -> String {
    hex::encode(format!("{created_at}:{id}"))
}

fn decode_cursor(text: &str) -> Result<(u64, RunId), ApiError> {
    let bad = || ApiError::bad("cursor", "not a cursor this API issued (take `next_cursor` of the previous page)");
    let raw = String::from_utf8(hex::decode(text).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, RunId::from(id)))
}

/// A start's `?wait=SECONDS` (fractions allowed), capped at [`MAX_WAIT_SECS`]; `None` without.
pub fn wait(query: &str) -> Result<Option<std::time::Duration>, ApiError> {
    let p = params(query, &["wait"])?;
    get(&p, "wait")
        .map(|w| {
            w.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && (0.0..=MAX_WAIT_SECS as f64).contains(s))
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    ApiError::bad("wait", format!("`{w}` is not a number of seconds from 0 to {MAX_WAIT_SECS}"))
                })
        })
        .transpose()
}
