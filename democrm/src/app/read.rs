//! Read routes: contacts list/search, contact detail, deals, dashboard aggregates.
//! The search (`ILIKE '%term%'` over names, email and company, plus a count for pagination) and
//! the dashboard (whole-table aggregates) are the heavy queries legacy CRMs run.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::{RouteError, Shared};
use crate::seed::ANCHOR_UNIX;

/// The dashboard's activity window, in days before the seed's anchor date (no index serves it:
/// a sequential scan of `activities`).
const ACTIVITY_WINDOW_DAYS: i64 = 30;

#[derive(Debug, Deserialize)]
pub(crate) struct ContactsQuery {
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `%term%` with LIKE metacharacters escaped.
fn like_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn contact_summary(r: &Row) -> Value {
    json!({
        "id": r.get::<_, i64>("id"),
        "first_name": r.get::<_, String>("first_name"),
        "last_name": r.get::<_, String>("last_name"),
        "email": r.get::<_, String>("email"),
        "phone": r.get::<_, String>("phone"),
        "status": r.get::<_, String>("status"),
        "lead_score": r.get::<_, i32>("lead_score"),
        "company": r.get::<_, Option<String>>("company"),
    })
}

pub(crate) async fn contacts(
    State(ctx): Shared,
    Query(q): Query<ContactsQuery>,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/contacts";
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000);
    match q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => {
            let rows = ctx
                .query(
                    ROUTE,
                    "SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.status, c.lead_score, co.name AS company \
                     FROM contacts c LEFT JOIN companies co ON co.id = c.company_id \
                     ORDER BY c.id LIMIT $1 OFFSET $2",
                    &[&limit, &offset],
                )
                .await?;
            let total = ctx
                .query(
                    ROUTE,
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = 'contacts'",
                    &[],
                )
                .await?;
            let total: i64 = total.first().map_or(0, |r| r.get(0));
            Ok(Json(json!({
                "contacts": rows.iter().map(contact_summary).collect::<Vec<_>>(),
                "total_estimate": total,
            })))
        }
        Some(term) => {
            if term.len() > 100 {
                return Err(RouteError::BadRequest("search term too long"));
            }
            let pattern = like_pattern(term);
            let rows = ctx
                .query(
                    ROUTE,
                    "SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.status, c.lead_score, co.name AS company \
                     FROM contacts c LEFT JOIN companies co ON co.id = c.company_id \
                     WHERE c.first_name ILIKE $1 OR c.last_name ILIKE $1 OR c.email ILIKE $1 OR co.name ILIKE $1 \
                     ORDER BY c.lead_score DESC, c.id LIMIT $2 OFFSET $3",
                    &[&pattern, &limit, &offset],
                )
                .await?;
            let count = ctx
                .query(
                    ROUTE,
                    "SELECT count(*) FROM contacts c LEFT JOIN companies co ON co.id = c.company_id \
                     WHERE c.first_name ILIKE $1 OR c.last_name ILIKE $1 OR c.email ILIKE $1 OR co.name ILIKE $1",
                    &[&pattern],
                )
                .await?;
            let total: i64 = count.first().map_or(0, |r| r.get(0));
            Ok(Json(json!({
                "contacts": rows.iter().map(contact_summary).collect::<Vec<_>>(),
                "total": total,
            })))
        }
    }
}

pub(crate) async fn contact(
    State(ctx): Shared,
    Path(id): Path<i64>,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/contacts/{id}";
    let rows = ctx
        .query(
            ROUTE,
            "SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.status, c.lead_score, c.title, c.city, \
             c.created_at::text AS created_at, co.id AS company_id, co.name AS company, co.domain \
             FROM contacts c LEFT JOIN companies co ON co.id = c.company_id WHERE c.id = $1",
            &[&id],
        )
        .await?;
    let c = rows.first().ok_or(RouteError::NotFound)?;
    let mut contact = contact_summary(c);
    contact["title"] = json!(c.get::<_, String>("title"));
    contact["city"] = json!(c.get::<_, String>("city"));
    contact["created_at"] = json!(c.get::<_, String>("created_at"));
    contact["company_id"] = json!(c.get::<_, Option<i64>>("company_id"));
    contact["company_domain"] = json!(c.get::<_, Option<String>>("domain"));

    let activities = ctx
        .query(
            ROUTE,
            "SELECT id, kind, subject, notes, occurred_at::text FROM activities \
             WHERE contact_id = $1 ORDER BY occurred_at DESC LIMIT 20",
            &[&id],
        )
        .await?;
    let deals = ctx
        .query(
            ROUTE,
            "SELECT id, name, stage, amount_cents FROM deals WHERE contact_id = $1 ORDER BY id",
            &[&id],
        )
        .await?;
    let messages = ctx
        .query(
            ROUTE,
            "SELECT id, channel, status, error_code, created_at::text FROM messages \
             WHERE contact_id = $1 ORDER BY id DESC LIMIT 20",
            &[&id],
        )
        .await?;
    let payments = ctx
        .query(
            ROUTE,
            "SELECT id, amount_cents, currency, status, decline_code FROM payments \
             WHERE contact_id = $1 ORDER BY id DESC LIMIT 10",
            &[&id],
        )
        .await?;
    Ok(Json(json!({
        "contact": contact,
        "activities": activities.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "kind": r.get::<_, String>(1), "subject": r.get::<_, String>(2),
            "notes": r.get::<_, String>(3), "occurred_at": r.get::<_, String>(4),
        })).collect::<Vec<_>>(),
        "deals": deals.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "name": r.get::<_, String>(1), "stage": r.get::<_, String>(2),
            "amount_cents": r.get::<_, i64>(3),
        })).collect::<Vec<_>>(),
        "messages": messages.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "channel": r.get::<_, String>(1), "status": r.get::<_, String>(2),
            "error_code": r.get::<_, Option<String>>(3), "created_at": r.get::<_, String>(4),
        })).collect::<Vec<_>>(),
        "payments": payments.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "amount_cents": r.get::<_, i64>(1), "currency": r.get::<_, String>(2),
            "status": r.get::<_, String>(3), "decline_code": r.get::<_, Option<String>>(4),
        })).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DealsQuery {
    stage: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn deals(
    State(ctx): Shared,
    Query(q): Query<DealsQuery>,
) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/deals";
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let rows = match q.stage.as_deref() {
        Some(stage) => {
            ctx.query(
                ROUTE,
                "SELECT d.id, d.name, d.stage, d.amount_cents, d.probability, d.owner_name, co.name \
                 FROM deals d JOIN companies co ON co.id = d.company_id \
                 WHERE d.stage = $1 ORDER BY d.amount_cents DESC, d.id LIMIT $2",
                &[&stage, &limit],
            )
            .await?
        }
        None => {
            ctx.query(
                ROUTE,
                "SELECT d.id, d.name, d.stage, d.amount_cents, d.probability, d.owner_name, co.name \
                 FROM deals d JOIN companies co ON co.id = d.company_id \
                 ORDER BY d.amount_cents DESC, d.id LIMIT $1",
                &[&limit],
            )
            .await?
        }
    };
    Ok(Json(json!({
        "deals": rows.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "name": r.get::<_, String>(1), "stage": r.get::<_, String>(2),
            "amount_cents": r.get::<_, i64>(3), "probability": r.get::<_, i32>(4),
            "owner": r.get::<_, String>(5), "company": r.get::<_, String>(6),
        })).collect::<Vec<_>>(),
    })))
}

pub(crate) async fn dashboard(State(ctx): Shared) -> Result<Json<Value>, RouteError> {
    const ROUTE: &str = "/dashboard";
    let pipeline = ctx
        .query(
            ROUTE,
            "SELECT stage, count(*), coalesce(sum(amount_cents), 0)::bigint FROM deals GROUP BY stage ORDER BY stage",
            &[],
        )
        .await?;
    let since = chrono::DateTime::from_timestamp(ANCHOR_UNIX - ACTIVITY_WINDOW_DAYS * 86_400, 0)
        .unwrap_or_default()
        .to_rfc3339();
    let activity = ctx
        .query(
            ROUTE,
            "SELECT kind, count(*) FROM activities WHERE occurred_at >= $1::text::timestamptz \
             GROUP BY kind ORDER BY kind",
            &[&since],
        )
        .await?;
    let top = ctx
        .query(
            ROUTE,
            "SELECT co.id, co.name, sum(d.amount_cents)::bigint AS won FROM deals d \
             JOIN companies co ON co.id = d.company_id WHERE d.stage = 'won' \
             GROUP BY co.id, co.name ORDER BY won DESC LIMIT 10",
            &[],
        )
        .await?;
    let messages = ctx
        .query(
            ROUTE,
            "SELECT channel, status, count(*) FROM messages GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?;
    let payments = ctx
        .query(
            ROUTE,
            "SELECT status, count(*), coalesce(sum(amount_cents), 0)::bigint FROM payments GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await?;
    Ok(Json(json!({
        "pipeline": pipeline.iter().map(|r| json!({
            "stage": r.get::<_, String>(0), "deals": r.get::<_, i64>(1), "amount_cents": r.get::<_, i64>(2),
        })).collect::<Vec<_>>(),
        "activity_since": since,
        "activity_by_kind": activity.iter().map(|r| json!({
            "kind": r.get::<_, String>(0), "count": r.get::<_, i64>(1),
        })).collect::<Vec<_>>(),
        "top_companies": top.iter().map(|r| json!({
            "id": r.get::<_, i64>(0), "name": r.get::<_, String>(1), "won_cents": r.get::<_, i64>(2),
        })).collect::<Vec<_>>(),
        "messages": messages.iter().map(|r| json!({
            "channel": r.get::<_, String>(0), "status": r.get::<_, String>(1), "count": r.get::<_, i64>(2),
        })).collect::<Vec<_>>(),
        "payments": payments.iter().map(|r| json!({
            "status": r.get::<_, String>(0), "count": r.get::<_, i64>(1), "amount_cents": r.get::<_, i64>(2),
        })).collect::<Vec<_>>(),
    })))
}
