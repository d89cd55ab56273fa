//! Phase: client certificate. Runs first after the request filter, before
//! the body or the token is looked at: the subject of the certificate the
//! TLS listener verified (mutual TLS), checked against the route's
//! `client_cert` rule. `Err` is the 403; `Ok` is the subject, if any, which
//! the upstream receives under the proof when there is a caller.

use actix_web::HttpResponse;
use common::Problem;

use super::context::Ctx;
use crate::ops::certificates::CertStore;

/// The verified certificate's subject, admitted by the route's rule.
pub fn phase(ctx: &Ctx<'_>) -> Result<Option<String>, HttpResponse> {
    let subject = ctx
        .req
        .conn_data::<common::http::PeerCertificate>()
        .and_then(|c| CertStore::subject_of(&c.0));
    let Some(rule) = &ctx.route.client_cert else {
        return Ok(subject);
    };
    let refused = match &subject {
        None => "this route needs a verified client certificate (mutual TLS)",
        Some(s) if !rule.admits(s) => "this route does not admit the client certificate's subject",
        Some(_) => return Ok(subject),
    };
    Err(Problem::forbidden(refused).to_response())
}
