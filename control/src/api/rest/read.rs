//! get and list.

use std::time::Duration;

use axum::{http::StatusCode, response::Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Ctx;
use crate::{
    api::{response, table},
    model::{
        ApiError, meta,
        selector::{FieldSelector, LabelSelector},
    },
    store::{CachedObject, StoreError},
};

/// How long a list waits for the watch cache to catch up with etcd before reading etcd.
const CACHE_FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Answer with one object (as a Table if asked).
pub fn object_response(ctx: &Ctx<'_>, status: StatusCode, object: &Value) -> Response {
    if table::wanted(ctx.headers) {
        let list_meta = json!({"resourceVersion": meta::resource_version(object)});
        return response::json(
            status,
            &table::table(
                ctx.info(),
                std::slice::from_ref(object),
                ctx.query,
                list_meta,
            ),
        );
    }
    response::json(status, object)
}

/// GET of one object (and its `status` subresource, which reads the same object).
pub async fn get(ctx: &Ctx<'_>, name: &str) -> Result<Response, ApiError> {
    let object = ctx.load(name).await?;
    Ok(object_response(ctx, StatusCode::OK, &object))
}

/// The continue token: where the next page starts and at which revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let json = serde_json::to_vec(&Continue {
        rv,
        start: start.to_owned(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::bad_request("invalid continue token"))
}

/// Selectors of a list or watch.
pub struct Filter {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
}

impl Filter {
    /// From the query.
    pub fn from_query(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        Ok(Self {
            labels: ctx.query.label_selector()?,
            fields: ctx.query.field_selector(ctx.info())?,
        })
    }

    /// Does a cached object match?
    pub fn matches_cached(&self, object: &CachedObject) -> bool {
        self.labels.matches(&object.labels) && self.fields.matches(|f| object.field(f))
    }

    fn matches_value(&self, object: &Value) -> bool {
        self.labels.matches(&meta::string_map(object, "labels"))
            && self.fields.matches(|f| meta::field_value(object, f))
    }
}

/// The key prefix below the resource prefix for the request's namespace ("ns/" or "").
pub fn namespace_prefix(ctx: &Ctx<'_>) -> String {
    match &ctx.target.namespace {
        Some(ns) if ctx.info().namespaced => format!("{ns}/"),
        _ => String::new(),
    }
}

/// LIST: from the watch cache when unpaginated (after it caught up with etcd), from etcd at
/// a fixed revision when paginated with limit/continue.
pub async fn list(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let filter = Filter::from_query(ctx)?;
    let limit = ctx.query.number("limit")?.filter(|l| *l > 0);
    let token = ctx.query.get("continue").filter(|t| !t.is_empty());
    let info = ctx.info();
    let list_kind = format!("{}List", info.kind);
    // The watch cache answers while it is at the list's revision (a first page, or a
    // continuation of a list nothing changed since); otherwise etcd does, at the token's
    // revision, so every page belongs to one consistent list.
    let resume = token.map(decode_continue).transpose()?;
    let (items, revision, next, remaining) =
        match list_from_cache(ctx, &filter, limit, resume.as_ref()).await {
            Ok(result) => result,
            Err(_) => list_from_etcd(ctx, &filter, limit, token).await?,
        };
    // Stored in the storage version (or an older one): served in the request's.
    let items = ctx
        .registry()
        .converter()
        .raw_to_served(info, items)
        .await
        .map_err(ApiError::from)?;
    if table::wanted(ctx.headers) {
        let objects: Vec<Value> = items
            .iter()
            .filter_map(|b| serde_json::from_slice(b).ok())
            .collect();
        let mut list_meta = json!({"resourceVersion": revision.to_string()});
        if let Some(next) = &next {
            list_meta["continue"] = json!(next);
        }
        return Ok(response::json(
            StatusCode::OK,
            &table::table(info, &objects, ctx.query, list_meta),
        ));
    }
    let body = response::list(
        &info.api_version(),
        &list_kind,
        revision,
        next.as_deref(),
        remaining,
        items,
    );
    Ok(response::raw_json(StatusCode::OK, body))
}

type Listed = (Vec<Bytes>, i64, Option<String>, Option<i64>);

async fn list_from_cache(
    ctx: &Ctx<'_>,
    filter: &Filter,
    limit: Option<i64>,
    resume: Option<&Continue>,
) -> Result<Listed, ApiError> {
    let info = ctx.info();
    // resourceVersion=0 means "any recent state"; otherwise the list must be consistent.
    let cache = if resume.is_none() && ctx.query.get("resourceVersion") != Some("0") {
        ctx.fresh_cache(CACHE_FRESHNESS_WAIT).await?
    } else {
        ctx.state.store.cache(&info.prefix(), info.projection())
    };
    let snapshot = cache
        .snapshot(&namespace_prefix(ctx))
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    if let Some(resume) = resume
        && resume.rv != snapshot.revision
    {
        return Err(ApiError::expired(
            "the cache moved past the list's revision",
        ));
    }
    let prefix = info.prefix();
    let key_of = |o: &CachedObject| {
        if info.namespaced {
            format!("{prefix}{}/{}", o.namespace, o.name)
        } else {
            format!("{prefix}{}", o.name)
        }
    };
    // Keys are only built when resuming; a first page starts at the beginning.
    let start = resume.map(|r| r.start.as_str()).unwrap_or_default();
    let mut matching = snapshot
        .objects
        .iter()
        .filter(|o| start.is_empty() || key_of(o).as_str() >= start)
        .filter(|o| filter.matches_cached(o));
    let take = usize::try_from(limit.unwrap_or(i64::MAX)).unwrap_or(usize::MAX);
    let page: Vec<&std::sync::Arc<CachedObject>> = matching.by_ref().take(take).collect();
    let more = matching.count();
    let next = (more > 0)
        .then(|| {
            page.last()
                .map(|last| encode_continue(snapshot.revision, &format!("{}\0", key_of(last))))
        })
        .flatten();
    let remaining = (more > 0).then_some(more as i64);
    Ok((
        page.iter().map(|o| o.raw.clone()).collect(),
        snapshot.revision,
        next,
        remaining,
    ))
}

async fn list_from_etcd(
    ctx: &Ctx<'_>,
    filter: &Filter,
    limit: Option<i64>,
    token: Option<&str>,
) -> Result<Listed, ApiError> {
    let prefix = format!("{}{}", ctx.info().prefix(), namespace_prefix(ctx));
    let (mut start, mut revision) = match token {
        Some(token) => {
            let c = decode_continue(token)?;
            if !c.start.starts_with(&prefix) {
                return Err(ApiError::bad_request(
                    "continue token does not belong to this list",
                ));
            }
            (c.start, c.rv)
        }
        None => (prefix.clone(), 0),
    };
    let want = limit.unwrap_or(i64::MAX);
    let page_size = limit.unwrap_or(1_000).clamp(1, 1_000);
    let mut items = Vec::new();
    loop {
        let page = match ctx
            .state
            .store
            .list_page(&prefix, &start, revision, page_size)
            .await
        {
            Err(StoreError::Compacted { .. }) => {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start \
                     a new list without the continue parameter.",
                ));
            }
            other => other.map_err(|e| ctx.storage_error("", e))?,
        };
        revision = page.revision;
        for object in page.objects.iter().filter(|o| filter.matches_value(o)) {
            items.push(Bytes::from(serde_json::to_vec(object).unwrap_or_default()));
        }
        match page.next_key {
            Some(next) if (items.len() as i64) < want => start = next,
            Some(next) => {
                let remaining = page.remaining;
                return Ok((
                    items,
                    revision,
                    Some(encode_continue(revision, &next)),
                    Some(remaining),
                ));
            }
            None => return Ok((items, revision, None, None)),
        }
    }
}
