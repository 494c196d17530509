//! The web control panel: its embedded assets, browser sessions and the negotiation helper.
//!
//! An admin signs in with an API token (`POST /api/v1/session`); the panel then holds only an
//! HttpOnly, SameSite=Strict session cookie (Secure when served over TLS) and a CSRF token that every
//! change must echo in `X-CSRF-Token`. A session remembers the token's hash, not the token, and the
//! token is looked up again on every request, so revoking it ends its sessions at once. Sessions
//! live in memory and expire after [`SESSION_TTL`]. The assets are compiled into the binary: no
//! build step on the target machine; the partner form's defaults and ranges are filled into
//! `app.js` from `fedgate_manage::fields` as it is served.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fedgate_manage::fields::{self, PARTNER_FIELDS, POLICY_FIELDS};
use fedgate_model::{InvalidValue, NegotiationSettings, SaslNegotiation, TlsNegotiation};
use serde::{Deserialize, Serialize};

use crate::AdminState;
use crate::error::ApiError;
use crate::tokens;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "fedgate_session";
/// The header that must carry the session's CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
/// Where `app.js` takes the partner form's fields ([`partner_form`]).
const PARTNER_FORM_SLOT: &str = "[] /* partner form, from the field table */";
/// Where `app.js` takes the policies' switches ([`policy_switches`]).
const POLICY_SWITCHES_SLOT: &str = "[] /* policy switches, from the field table */";

/// The browser sessions of this process.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

#[derive(Clone)]
struct Session {
    token_hash: String,
    csrf: String,
    expires: Instant,
}

/// A live session, as the authentication middleware needs it.
pub struct SessionAuth {
    pub token_hash: String,
    pub csrf: String,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn create(&self, token_hash: String) -> Result<(String, String), ApiError> {
        let id = tokens::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let csrf = tokens::generate().map_err(|e| ApiError::internal(e.to_string()))?;
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        map.insert(
            id.clone(),
            Session {
                token_hash,
                csrf: csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, csrf))
    }

    /// The session a request's cookie names, if it is live.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<SessionAuth> {
        let id = session_cookie(headers)?;
        let map = self.lock();
        let s = map.get(id).filter(|s| s.expires > Instant::now())?;
        Some(SessionAuth {
            token_hash: s.token_hash.clone(),
            csrf: s.csrf.clone(),
        })
    }

    fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.lock().remove(id);
        }
    }
}

/// The session id in the `Cookie` header.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether a change request carries the session's CSRF token.
pub fn csrf_ok(headers: &HeaderMap, session: &SessionAuth) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), session.csrf.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /api/v1/session` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SessionInput {
    /// An API token made with `fedgate token create`.
    pub token: String,
}

/// Who is signed in, and the CSRF token to echo in `X-CSRF-Token`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SessionInfo {
    pub name: String,
    /// `admin` or `reader`.
    pub role: String,
    pub csrf_token: String,
}

fn cookie(state: &AdminState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("fedgate_session=; Max-Age=0"))
}

async fn token_info(
    state: &AdminState,
    token_hash: String,
) -> Result<fedgate_store::TokenInfo, ApiError> {
    state
        .blocking(move |store| Ok(store.token_by_hash(&token_hash)?))
        .await?
        .ok_or_else(|| ApiError::unauthorized("The API token is not valid or has been revoked."))
}

/// Sign in with an API token: sets the session cookie.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    request_body = SessionInput,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionInfo),
        (status = 400, description = "The body is not a JSON object with Token", body = crate::error::ErrorBody),
        (status = 401, description = "The token is not valid or has been revoked", body = crate::error::ErrorBody),
    )
)]
pub async fn sign_in(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // JSON only: a cross-site HTML form can send text/plain or form data without a preflight,
    // never application/json.
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::from(InvalidValue::new(
            "Content-Type",
            "The sign-in request must be JSON. Allowed values: Content-Type: application/json.",
        )));
    }
    let input: SessionInput = serde_json::from_slice(&body).map_err(|e| {
        ApiError::from(InvalidValue::new(
            "Token",
            format!("A JSON object {{\"Token\": \"fgt_...\"}} is expected: {e}."),
        ))
    })?;
    let token_hash = tokens::hash(input.token.trim());
    let info = token_info(&state, token_hash.clone()).await?;
    let (id, csrf) = state.sessions().create(token_hash)?;
    let body = SessionInfo {
        name: info.name,
        role: info.role.to_string(),
        csrf_token: csrf,
    };
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &id, SESSION_TTL.as_secs()),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The signed-in session (for a reloaded page).
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "Not signed in", body = crate::error::ErrorBody),
    )
)]
pub async fn current(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let session = state
        .sessions()
        .from_headers(&headers)
        .ok_or_else(|| ApiError::unauthorized("Not signed in."))?;
    let info = token_info(&state, session.token_hash).await?;
    let mut response = Json(SessionInfo {
        name: info.name,
        role: info.role.to_string(),
        csrf_token: session.csrf,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Sign out: ends the session and clears the cookie.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "session",
    security(()),
    responses((status = 204, description = "Signed out"))
)]
pub async fn sign_out(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    state.sessions().remove(&headers);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    response
}

/// The three negotiation settings, as the panel sends them.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "PascalCase")]
#[into_params(parameter_in = Query)]
pub struct NegotiationQuery {
    /// Required | Optional | NotSupported (default Required).
    pub tls_negotiation: Option<String>,
    /// Required | Optional | NotSupported (default Required).
    pub sasl_negotiation: Option<String>,
    /// true | false (default true).
    pub support_dialback_negotiation: Option<String>,
}

/// Whether a TLS × SASL × Dialback combination can authenticate, its warnings and the methods used.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct NegotiationCheck {
    pub valid: bool,
    /// Why the combination is refused, when it is.
    pub error: Option<String>,
    pub warnings: Vec<String>,
    /// Authentication methods, strongest first.
    pub methods: Vec<String>,
}

/// Check a TLS × SASL × Dialback combination with the model's rule (for the panel's hints).
#[utoipa::path(
    get,
    path = "/api/v1/negotiation",
    tag = "partners",
    params(NegotiationQuery),
    responses(
        (status = 200, description = "The verdict for the combination", body = NegotiationCheck),
        (status = 400, description = "A value is not one of the allowed names", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
    )
)]
pub async fn negotiation(
    Query(q): Query<NegotiationQuery>,
) -> Result<Json<NegotiationCheck>, ApiError> {
    let tls = q
        .tls_negotiation
        .map(|t| InvalidValue::parse_choice::<TlsNegotiation>("TlsNegotiation", &t))
        .transpose()?
        .unwrap_or_default();
    let sasl = q
        .sasl_negotiation
        .map(|t| InvalidValue::parse_choice::<SaslNegotiation>("SaslNegotiation", &t))
        .transpose()?
        .unwrap_or_default();
    let dialback = q
        .support_dialback_negotiation
        .map(|t| InvalidValue::parse_bool("SupportDialbackNegotiation", &t))
        .transpose()?
        .unwrap_or(true);
    let settings = NegotiationSettings {
        tls,
        sasl,
        dialback,
    };
    let methods = settings
        .allowed_methods()
        .iter()
        .map(|m| m.to_string())
        .collect();
    Ok(Json(match settings.validate() {
        Ok(warnings) => NegotiationCheck {
            valid: true,
            error: None,
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            methods,
        },
        Err(e) => NegotiationCheck {
            valid: false,
            error: Some(format!("{e}.")),
            warnings: Vec::new(),
            methods,
        },
    }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /`: the panel.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The partner form's fields for the panel, one per row of the field table, in table order:
/// `name`, `label`, `hint` (its default filled in), the input `type` (`bool`, `list`,
/// `number`, `select` with the choice type's `options`, else `text`), `def` (the value a new
/// partner has: a boolean, or the name of a choice) where the form can show it, `min`/`max` for
/// a numeric field, and `clear` where an empty input sends null (defaults that are words for
/// nothing: "none", "empty", "unset"; the form shows those fields empty).
fn partner_form() -> serde_json::Value {
    let form = PARTNER_FIELDS
        .iter()
        .map(|f| {
            let mut entry = serde_json::Map::new();
            entry.insert("name".into(), f.name.into());
            entry.insert("label".into(), f.label.into());
            entry.insert("hint".into(), f.panel_hint().into());
            let kind = match f.type_name {
                fields::BOOLEAN => {
                    entry.insert("def".into(), (f.default == "true").into());
                    "bool"
                }
                fields::LIST_MODIFIER => "list",
                fields::UINT32 => "number",
                fields::STRING => "text",
                choice => match fields::choices(choice) {
                    Some(options) => {
                        entry.insert("options".into(), options.into());
                        entry.insert("def".into(), f.default.into());
                        "select"
                    }
                    None => "text",
                },
            };
            entry.insert("type".into(), kind.into());
            if let Some((min, max)) = f.range {
                entry.insert("min".into(), min.into());
                entry.insert("max".into(), max.into());
            }
            if f.clearable() {
                entry.insert("clear".into(), true.into());
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    serde_json::Value::Array(form)
}

/// The policies' switches for the panel, `{name, label}` for each boolean of the policy field
/// table, those fedgate acts on first ([`fields::in_help_order`]).
fn policy_switches() -> serde_json::Value {
    fields::in_help_order(&POLICY_FIELDS)
        .into_iter()
        .filter(|f| f.type_name == fields::BOOLEAN)
        .map(|f| serde_json::json!({ "name": f.name, "label": f.label }))
        .collect()
}

/// `GET /panel/app.js`, the partner form's fields and the policies' switches filled in.
pub async fn app_js() -> Response {
    static SCRIPT: OnceLock<String> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| {
        APP_JS
            .replacen(PARTNER_FORM_SLOT, &partner_form().to_string(), 1)
            .replacen(POLICY_SWITCHES_SLOT, &policy_switches().to_string(), 1)
    });
    asset("text/javascript; charset=utf-8", script)
}

/// `GET /panel/app.css`.
pub async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_js_takes_the_partner_form_from_the_field_table() {
        assert_eq!(APP_JS.matches(PARTNER_FORM_SLOT).count(), 1);
        let form = partner_form();
        let field = |name: &str| {
            form.as_array()
                .and_then(|a| a.iter().find(|f| f["name"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("{name} is on the form"))
        };
        let names: Vec<&str> = PARTNER_FIELDS.iter().map(|f| f.name).collect();
        let listed: Vec<String> = form
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["name"].to_string().replace('"', ""))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(listed, names);
        let partner_type = field("PartnerType");
        assert_eq!(partner_type["type"], "select");
        assert_eq!(partner_type["label"], "Partner type");
        assert_eq!(partner_type["def"], "PublicUnverified");
        assert_eq!(
            partner_type["options"],
            serde_json::json!(["Federated", "PublicVerified", "PublicUnverified"])
        );
        let dialback = field("SupportDialbackNegotiation");
        assert_eq!(
            (&dialback["type"], &dialback["def"]),
            (&"bool".into(), &true.into())
        );
        assert_eq!(dialback["hint"], "Default: on.");
        assert_eq!(field("BypassDualWrite")["def"], false);
        let limit = field("ConnectionLimit");
        assert_eq!(
            (&limit["type"], &limit["min"]),
            (&"number".into(), &1.into())
        );
        assert_eq!(field("AdditionalDomains")["type"], "list");
        let proxy = field("ProxyFqdn");
        assert!(proxy.get("def").is_none());
        assert_eq!(
            (&proxy["type"], &proxy["clear"]),
            (&"text".into(), &true.into())
        );
    }

    #[test]
    fn app_js_takes_the_policy_switches_from_the_field_table() {
        assert_eq!(APP_JS.matches(POLICY_SWITCHES_SLOT).count(), 1);
        assert_eq!(
            policy_switches(),
            serde_json::json!([
                { "name": "EnableXmppAccess", "label": "XMPP federation" },
                { "name": "EnableFederationAccess", "label": "Federation access" },
                { "name": "EnableOutsideAccess", "label": "Outside access" },
                { "name": "EnablePublicCloudAccess", "label": "Public cloud access" },
                { "name": "EnablePublicCloudAudioVideoAccess", "label": "Public cloud audio/video" },
            ])
        );
    }

    #[test]
    fn cookie_parsing_and_csrf() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; fedgate_session=s1; c=d"),
        );
        assert_eq!(session_cookie(&headers), Some("s1"));
        let auth = SessionAuth {
            token_hash: "h".into(),
            csrf: "tok".into(),
        };
        assert!(!csrf_ok(&headers, &auth));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("tok"));
        assert!(csrf_ok(&headers, &auth));
        headers.insert(CSRF_HEADER, HeaderValue::from_static("tok2"));
        assert!(!csrf_ok(&headers, &auth));
    }

    #[test]
    fn sessions_expire_and_end() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.create("hash".into()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={id}")).unwrap(),
        );
        let s = sessions.from_headers(&headers).unwrap();
        assert_eq!(
            (s.token_hash.as_str(), s.csrf.as_str()),
            ("hash", csrf.as_str())
        );
        sessions.remove(&headers);
        assert!(sessions.from_headers(&headers).is_none());
    }
}
