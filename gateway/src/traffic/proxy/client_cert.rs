//! Phase: client certificate. Runs first after the request filter, before
//! the body or the token is looked at: the subject of the certificate the
//! TLS listener verified (mutual TLS), checked against the route's
//! `client_cert` rule. `Err` is the 403; `Ok` is the subject, if any, which
//! the upstream receives under the proof when there is a caller.

use actix_web::HttpResponse;
use common::Problem;

use super::context::Ctx;
use crate::ops::certificates::CertStore;

/// The verified certificate's subject (RFC 4514 text, for the upstream),
/// admitted by the route's rule: compared as attribute pairs, not as text.
pub fn phase(ctx: &Ctx<'_>) -> Result<Option<String>, HttpResponse> {
    let subject = ctx
        .req
        .conn_data::<common::http::PeerCertificate>()
        .and_then(|c| CertStore::subject_of(&c.0));
    let refused = match (&ctx.route.client_cert, &subject) {
        (None, _) => None,
        (Some(_), None) => Some("this route needs a verified client certificate (mutual TLS)"),
        (Some(rule), Some(s)) if !rule.admits(s) => {
            Some("this route does not admit the client certificate's subject")
        }
        (Some(_), Some(_)) => None,
    };
    match refused {
        Some(why) => Err(Problem::forbidden(why).to_response()),
        None => Ok(subject.map(|s| s.to_string())),
    }
}
