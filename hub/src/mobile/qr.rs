//! QR codes of a region's complaint entry (PNG and SVG), encoding a signed URL:
//! `<public_base_url>?region=<division>&exp=<unix secs>&sig=<hex>`, where `sig` is the keyed
//! HMAC-SM3 digest (the key ring's blind-index key) of `app-qr|region|exp`. The entry page
//! calls `GET /api/v1/app/public/entry` with the same query to check it and learn the unit.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use qrcode::{Color, QrCode};
use serde::Deserialize;
use serde_json::json;
use xfhub_security::keys::KeyRing;

use super::public::region_unit;
use crate::app::AppState;
use crate::error::ApiError;

fn signature(ring: &KeyRing, region: &str, exp: i64) -> String {
    ring.keyed_digest(format!("app-qr|{region}|{exp}").as_bytes())
}

/// The signed entry URL of `region`.
pub fn signed_url(ring: &KeyRing, base: &str, region: &str, exp: i64) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!(
        "{base}{sep}region={region}&exp={exp}&sig={}",
        signature(ring, region, exp)
    )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrParams {
    /// `png` (default) or `svg`.
    #[serde(default)]
    pub format: Option<String>,
}

/// `GET /api/v1/app/public/qr/{division}?format=png|svg`.
#[utoipa::path(get, path = "/api/v1/app/public/qr/{division}", tag = "app", params(("division" = String, Path, description = "region (division code)"), QrParams), responses((status = 200, description = "image/png or image/svg+xml"), (status = 400, description = "invalid_parameter", body = crate::error::ErrorBody), (status = 404, description = "region_unknown", body = crate::error::ErrorBody)))]
pub async fn code(
    State(s): State<AppState>,
    Path(division): Path<String>,
    Query(p): Query<QrParams>,
) -> Result<Response, ApiError> {
    if region_unit(&s, &division).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "region_unknown",
            "no complaint entry for this region",
            "该地区未开通投诉入口",
        ));
    }
    let days = i64::from(s.app.config.qr_valid_days);
    let exp = chrono::Utc::now().timestamp() + days * 86_400;
    let url = signed_url(
        &s.keys.current(),
        &s.app.config.public_base_url,
        &division,
        exp,
    );
    let qr = QrCode::new(url.as_bytes()).map_err(|e| ApiError::internal("qr", &e))?;
    match p.format.as_deref().unwrap_or("png") {
        "svg" => {
            let svg = qr
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .build();
            Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
        }
        "png" => Ok(([(header::CONTENT_TYPE, "image/png")], png(&qr)?).into_response()),
        _ => Err(ApiError::bad_param(
            "format",
            "png or svg",
            "应为 png 或 svg",
        )),
    }
}

/// Renders the modules as an 8-bit grayscale PNG, 8 pixels a module, 4 modules of quiet zone.
fn png(qr: &QrCode) -> Result<Vec<u8>, ApiError> {
    const SCALE: usize = 8;
    const QUIET: usize = 4;
    let w = qr.width();
    let colors = qr.to_colors();
    let side = (w + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == Color::Dark {
            let (x, y) = (i % w + QUIET, i / w + QUIET);
            for dy in 0..SCALE {
                let row = (y * SCALE + dy) * side;
                pixels[row + x * SCALE..row + (x + 1) * SCALE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let side32 = u32::try_from(side).map_err(|e| ApiError::internal("qr png", &e))?;
        let mut enc = png::Encoder::new(&mut out, side32, side32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc
            .write_header()
            .map_err(|e| ApiError::internal("qr png", &e))?;
        writer
            .write_image_data(&pixels)
            .map_err(|e| ApiError::internal("qr png", &e))?;
    }
    Ok(out)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntryParams {
    pub region: String,
    pub exp: i64,
    pub sig: String,
}

/// `GET /api/v1/app/public/entry?region&exp&sig`: checks a scanned URL; answers the region
/// and its handling unit.
#[utoipa::path(get, path = "/api/v1/app/public/entry", tag = "app", params(EntryParams), responses((status = 200, description = "{region, unit}"), (status = 400, description = "qr_invalid", body = crate::error::ErrorBody)))]
pub async fn entry(
    State(s): State<AppState>,
    Query(p): Query<EntryParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "qr_invalid",
            "the complaint entry link is not valid or has expired; scan the code again",
            "投诉入口链接无效或已过期，请重新扫码",
        )
    };
    let expected = signature(&s.keys.current(), &p.region, p.exp);
    let same: bool = subtle_eq(expected.as_bytes(), p.sig.as_bytes());
    if !same || p.exp < chrono::Utc::now().timestamp() {
        return Err(bad());
    }
    let unit = region_unit(&s, &p.region).await?.ok_or_else(bad)?;
    Ok(Json(json!({ "region": p.region, "unit": unit })))
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
