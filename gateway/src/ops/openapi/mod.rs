//! The public API description: one OpenAPI 3.1 document with the gateway's
//! own endpoints and every service operation a route exposes, at its public
//! path, with the access each needs and the errors the gateway itself adds.
//!
//! - [`doc`]: the gateway's own endpoints (utoipa) and the committed,
//!   offline document;
//! - [`merge`]: the merge, a pure function of the gateway's own document,
//!   the route table and the services' documents;
//! - [`fetch`]: the services' documents, fetched from the running services
//!   (`GET /openapi.json` on a target in rotation) every
//!   `openapi.refresh_secs`, the last good one kept while a service is down;
//! - [`handlers`]: `/openapi.json` and Swagger UI at `/docs`.

pub mod fetch;
pub mod handlers;
pub mod merge;
pub mod protection;
pub mod schema_names;

pub use handlers::offline;
