//! Campaign sends (one SendGrid call per recipient, a `messages` row each) and automation
//! triggers (send email / send SMS / charge card). A pooled connection is never held across a
//! provider call. Provider outcomes land in `messages` / `payments`; webhooks refine them later.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::outbound::{self, Outcome};
use super::{Ctx, RouteError, Shared};
use crate::seed::{AUTOMATION_FROM, CAMPAIGN_FROM};

#[derive(Debug, Default, Deserialize)]
struct SendRequest {
    limit: Option<u32>,
}

/// Records a provider outcome on a `messages` row.
async fn record_message(
    ctx: &Ctx,
    route: &str,
    id: i64,
    outcome: &Outcome,
) -> Result<(), RouteError> {
    match outcome {
        Outcome::Accepted { id: pid, status } => {
            ctx.execute(
                route,
                "UPDATE messages SET provider_message_id = $2, \
                 status = CASE WHEN status = 'queued' THEN $3 ELSE status END, updated_at = now() \
                 WHERE id = $1",
                &[&id, pid, status],
            )
            .await?;
        }
        Outcome::Declined { code, .. } | Outcome::Failed { code } => {
            ctx.execute(
                route,
                "UPDATE messages SET status = 'failed', error_code = $2, updated_at = now() WHERE id = $1",
                &[&id, code],
            )
            .await?;
        }
    }
    Ok(())
}

pub(crate) async fn campaign_send(
    State(ctx): Shared,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), RouteError> {
    const ROUTE: &str = "/campaigns/{id}/send";
    let req: SendRequest = if body.is_empty() {
        SendRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| RouteError::BadRequest("invalid JSON body"))?
    };
    let limit = i64::from(req.limit.unwrap_or(ctx.config.campaign_batch).clamp(1, 500));
    let rows = ctx
        .query(
            ROUTE,
            "SELECT segment, subject, name FROM campaigns WHERE id = $1",
            &[&id],
        )
        .await?;
    let c = rows.first().ok_or(RouteError::NotFound)?;
    let (segment, subject): (String, String) = (c.get(0), c.get(1));
    let max = ctx
        .query(ROUTE, "SELECT coalesce(max(id), 0) FROM contacts", &[])
        .await?;
    let max_id: i64 = max.first().map_or(0, |r| r.get(0));
    let start = if max_id > limit * 10 {
        rand::random_range(0..max_id - limit * 10)
    } else {
        0
    };
    let recipients = ctx
        .query(
            ROUTE,
            "SELECT id, email FROM contacts WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3",
            &[&segment, &start, &limit],
        )
        .await?;
    let recipients: Vec<(i64, String)> = recipients.iter().map(|r| (r.get(0), r.get(1))).collect();
    let ctx_ref = &ctx;
    let subject_ref = &subject;
    let results: Vec<Result<bool, RouteError>> = futures::stream::iter(recipients)
        .map(|(contact_id, email)| async move {
            let row = ctx_ref
                .query(
                    ROUTE,
                    "INSERT INTO messages (contact_id, campaign_id, channel, provider, status) \
                     VALUES ($1, $2, 'email', 'sendgrid', 'queued') RETURNING id",
                    &[&contact_id, &id],
                )
                .await?;
            let message_id: i64 = row.first().map_or(0, |r| r.get(0));
            let text = "Hello from the Vigil demo CRM. Reply STOP to unsubscribe.";
            let outcome = outbound::send_email(
                ctx_ref,
                CAMPAIGN_FROM,
                &email,
                subject_ref,
                text,
                message_id,
            )
            .await;
            record_message(ctx_ref, ROUTE, message_id, &outcome).await?;
            Ok(matches!(outcome, Outcome::Accepted { .. }))
        })
        .buffer_unordered(ctx.config.campaign_concurrency.max(1))
        .collect()
        .await;
    let mut accepted = 0u64;
    let mut failed = 0u64;
    for r in results {
        if r? {
            accepted += 1;
        } else {
            failed += 1;
        }
    }
    ctx.execute(
        ROUTE,
        "UPDATE campaigns SET status = 'sent' WHERE id = $1",
        &[&id],
    )
    .await?;
    let status = if failed > 0 && accepted == 0 {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "campaign_id": id,
            "attempted": accepted + failed,
            "accepted": accepted,
            "failed": failed,
        })),
    ))
}

#[derive(Debug, Deserialize)]
struct TriggerRequest {
    contact_id: i64,
}

pub(crate) async fn automation_trigger(
    State(ctx): Shared,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), RouteError> {
    const ROUTE: &str = "/automations/{id}/trigger";
    let req: TriggerRequest = serde_json::from_slice(&body)
        .map_err(|_| RouteError::BadRequest("expected {\"contact_id\": n}"))?;
    let rows = ctx
        .query(
            ROUTE,
            "SELECT action, template, amount_cents, enabled, name FROM automations WHERE id = $1",
            &[&id],
        )
        .await?;
    let a = rows.first().ok_or(RouteError::NotFound)?;
    let (action, template, amount, enabled, name): (String, String, Option<i64>, bool, String) =
        (a.get(0), a.get(1), a.get(2), a.get(3), a.get(4));
    if !enabled {
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({"error": "automation disabled"})),
        ));
    }
    let rows = ctx
        .query(
            ROUTE,
            "SELECT email, phone FROM contacts WHERE id = $1",
            &[&req.contact_id],
        )
        .await?;
    let c = rows.first().ok_or(RouteError::NotFound)?;
    let (email, phone): (String, String) = (c.get(0), c.get(1));

    let (record_id, outcome) = match action.as_str() {
        "send_email" | "send_sms" => {
            let sms = action == "send_sms";
            let (channel, provider) = if sms {
                ("sms", "twilio")
            } else {
                ("email", "sendgrid")
            };
            let row = ctx
                .query(
                    ROUTE,
                    "INSERT INTO messages (contact_id, automation_id, channel, provider, status) \
                     VALUES ($1, $2, $3, $4, 'queued') RETURNING id",
                    &[&req.contact_id, &id, &channel, &provider],
                )
                .await?;
            let message_id: i64 = row.first().map_or(0, |r| r.get(0));
            let outcome = if sms {
                outbound::send_sms(&ctx, &phone, &template).await
            } else {
                outbound::send_email(&ctx, AUTOMATION_FROM, &email, &name, &template, message_id)
                    .await
            };
            record_message(&ctx, ROUTE, message_id, &outcome).await?;
            (message_id, outcome)
        }
        "charge_card" => {
            let amount = amount.unwrap_or(1000);
            let row = ctx
                .query(
                    ROUTE,
                    "INSERT INTO payments (contact_id, automation_id, amount_cents, currency, status) \
                     VALUES ($1, $2, $3, 'usd', 'pending') RETURNING id",
                    &[&req.contact_id, &id, &amount],
                )
                .await?;
            let payment_id: i64 = row.first().map_or(0, |r| r.get(0));
            let outcome = outbound::charge(&ctx, amount, payment_id, req.contact_id, &name).await;
            let (pid, status, code) = match &outcome {
                Outcome::Accepted { id, status } => (Some(id.clone()), status.clone(), None),
                Outcome::Declined { id, code } => (id.clone(), "failed".into(), Some(code.clone())),
                Outcome::Failed { code } => (None, "error".into(), Some(code.clone())),
            };
            ctx.execute(
                ROUTE,
                "UPDATE payments SET provider_payment_id = coalesce($2, provider_payment_id), \
                 status = CASE WHEN status = 'pending' THEN $3 ELSE status END, \
                 decline_code = coalesce(decline_code, $4), updated_at = now() WHERE id = $1",
                &[&payment_id, &pid, &status, &code],
            )
            .await?;
            (payment_id, outcome)
        }
        _ => return Err(RouteError::BadRequest("unknown automation action")),
    };
    let (status, body) = match outcome {
        Outcome::Accepted { id: pid, status } => (
            StatusCode::OK,
            json!({"outcome": "accepted", "provider_id": pid, "provider_status": status}),
        ),
        Outcome::Declined { id: pid, code } => (
            StatusCode::OK,
            json!({"outcome": "declined", "provider_id": pid, "decline_code": code}),
        ),
        Outcome::Failed { code } => (
            StatusCode::BAD_GATEWAY,
            json!({"outcome": "failed", "error_code": code}),
        ),
    };
    let mut body = body;
    body["automation_id"] = json!(id);
    body["action"] = json!(action);
    body["record_id"] = json!(record_id);
    Ok((status, Json(body)))
}
