//! A test API over a real SQLite file, with an admin and a reader token, called in-process with
//! `tower::ServiceExt::oneshot` (the store runs on the blocking pool as in production).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use fedgate_admin::{AdminState, router, tokens};
use fedgate_store::{SqliteStore, Store, TokenRole};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub struct Api {
    /// Kept so the database outlives the test.
    pub _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub router: Router,
    pub admin: String,
    pub reader: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn etag(&self) -> String {
        self.headers
            .get("etag")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// Assert a JSON error with this status and parameter; returns the message.
    pub fn error(&self, status: u16, parameter: Option<&str>) -> String {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let e = &self.body["error"];
        assert_eq!(
            e["parameter"].as_str(),
            parameter,
            "parameter of {}",
            self.body
        );
        assert!(e["code"].is_string(), "{}", self.body);
        e["message"].as_str().unwrap().to_owned()
    }
}

impl Api {
    pub fn new() -> Api {
        Self::with(|s| s)
    }

    pub fn with(configure: impl FnOnce(AdminState) -> AdminState) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("fedgate.db")).unwrap());
        let (_, admin) =
            tokens::create(store.as_ref(), "ops", TokenRole::Admin, "cli:test").unwrap();
        let (_, reader) =
            tokens::create(store.as_ref(), "monitor", TokenRole::Reader, "cli:test").unwrap();
        let shared: Arc<dyn Store> = store.clone();
        let router = router(configure(AdminState::new(shared)));
        Api {
            _dir: dir,
            store,
            router,
            admin,
            reader,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// As the admin token.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        let token = self.admin.clone();
        self.send(
            method,
            uri,
            Some(&token),
            &[],
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    pub async fn patch(&self, uri: &str, if_match: &str, body: Value) -> Reply {
        let token = self.admin.clone();
        self.send(
            Method::PATCH,
            uri,
            Some(&token),
            &[("if-match", if_match)],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }

    pub fn audit_len(&self) -> usize {
        self.store
            .audit_log(&fedgate_store::AuditQuery {
                limit: Some(100_000),
                ..Default::default()
            })
            .unwrap()
            .len()
    }
}
