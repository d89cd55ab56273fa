//! The orders service. Its domain (orders owned by the caller, admins see
//! all) arrives with issue #5; today it has the full app shape — settings,
//! database and migrations, gateway-proof verification, health and OpenAPI.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use common::config::{ConfigError, Loader};
use common::db::DatabaseSettings;
use common::http::{GatewayProofScheme, Health, Running};
use common::identity::ProofSettings;
use common::{FieldError, Problem};
use serde::Deserialize;
use utoipa::OpenApi;

const DEFAULTS: &str = include_str!("../../config/orders.yaml");

/// Unprefixed environment names this service reads.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATA_DIR", "data_dir"),
    ("DATABASE_URL", "database.url"),
    ("GATEWAY_PROOF_PUBLIC_KEY", "gateway_proof.public_key_pem"),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub database: DatabaseSettings,
    pub gateway_proof: ProofSettings,
}

impl Settings {
    pub fn loader() -> Loader {
        Loader::new("orders", DEFAULTS)
    }

    pub fn from_loader(loader: Loader) -> Result<Self, ConfigError> {
        loader
            .env_aliases(ENV_ALIASES)
            .env_prefix("ORDERS")
            .extract()
    }

    pub fn load() -> Result<Self, ConfigError> {
        Self::from_loader(Self::loader())
    }
}

pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let listener = common::http::bind(settings.listen)?;
    build_with_listener(settings, listener).await
}

pub async fn build_with_listener(
    settings: Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let db = common::db::open(
        &settings.database,
        &settings.data_dir,
        migrations::Service::Orders,
    )
    .await?;
    let verifier = settings
        .gateway_proof
        .verifier(&settings.data_dir)
        .context("loading the gateway proof public key (gateway_proof.public_key_files)")?;
    let db = web::Data::new(db);
    let verifier = web::Data::new(verifier);
    Ok(common::http::serve(
        listener,
        settings.workers,
        move |cfg| {
            cfg.app_data(db.clone())
                .app_data(verifier.clone())
                .service(web::resource("/openapi.json").get(openapi_json))
                .configure(common::http::health_routes);
        },
    )?)
}

/// This service's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// The orders service's API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "gatehouse orders service", version = "0.1.0",
        description = "Orders owned by their creator. Reached only through the gateway."),
    paths(common::http::healthz, common::http::readyz, openapi_json),
    components(schemas(Problem, FieldError, Health)),
    modifiers(&GatewayProofScheme),
    tags((name = "health", description = "Probes and metadata"))
)]
pub struct ApiDoc;
