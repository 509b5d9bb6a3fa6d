//! Mock Xiangyiban app message service: receives push messages for app users.
//!
//! - `POST /api/messages` with `{"message_id","user_id","title","body"}` and
//!   `Authorization: Bearer <token>`: `200 {"code":0,"message_id"}`; a repeated `message_id` is
//!   answered the same and not delivered twice (the service de-duplicates too).
//! - `GET /mock/messages`: what was delivered, in order.
//!
//! Faults ([`AppMsgFaults`]): the next N calls fail with 503 before anything is kept
//! (`fail_next`), or the next N calls keep the message and then fail with 500
//! (`fail_after_accept`: the sender cannot know it was delivered and must retry safely).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A message as the service received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppMessage {
    pub message_id: String,
    pub user_id: String,
    pub title: String,
    pub body: String,
}

/// Injected faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppMsgFaults {
    /// Calls still to refuse with 503 (nothing kept).
    pub fail_next: u32,
    /// Calls still to keep and then answer 500.
    pub fail_after_accept: u32,
}

#[derive(Default)]
struct Shared {
    delivered: Vec<AppMessage>,
    calls: u64,
    faults: AppMsgFaults,
}

struct Inner {
    token: String,
    shared: Mutex<Shared>,
}

/// A running mock app message service.
pub struct MockAppMsg {
    inner: Arc<Inner>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockAppMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockAppMsg")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for MockAppMsg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockAppMsg {
    /// Starts the mock on `addr` (port 0: any free port), accepting bearer `token`.
    pub async fn start(addr: SocketAddr, token: &str) -> std::io::Result<MockAppMsg> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            shared: Mutex::new(Shared::default()),
        });
        let app = Router::new()
            .route("/api/messages", post(receive))
            .route("/mock/messages", get(list))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(MockAppMsg { inner, addr, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the injected faults.
    pub fn faults(&self, change: impl FnOnce(&mut AppMsgFaults)) {
        change(&mut self.lock().faults);
    }

    /// Messages delivered (each message id once).
    pub fn delivered(&self) -> Vec<AppMessage> {
        self.lock().delivered.clone()
    }

    /// Calls received, including refused and repeated ones.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.inner.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == inner.token);
    let mut s = inner.shared.lock().unwrap_or_else(|e| e.into_inner());
    s.calls += 1;
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": 401, "msg": "bad token"})),
        )
            .into_response();
    }
    if s.faults.fail_next > 0 {
        s.faults.fail_next -= 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"code": 503, "msg": "busy"})),
        )
            .into_response();
    }
    let msg: AppMessage = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"code": 400, "msg": e.to_string()})),
            )
                .into_response()
        }
    };
    if msg.message_id.is_empty() || msg.user_id.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 400, "msg": "message_id and user_id are required"})),
        )
            .into_response();
    }
    if !s.delivered.iter().any(|m| m.message_id == msg.message_id) {
        s.delivered.push(msg.clone());
    }
    if s.faults.fail_after_accept > 0 {
        s.faults.fail_after_accept -= 1;
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": 500, "msg": "lost answer"})),
        )
            .into_response();
    }
    Json(json!({"code": 0, "message_id": msg.message_id})).into_response()
}

async fn list(State(inner): State<Arc<Inner>>) -> Json<Vec<AppMessage>> {
    Json(
        inner
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .delivered
            .clone(),
    )
}

/// `xfhub-mocks appmsg [--listen ADDR] [--token T]`: runs until ctrl-c.
pub fn cli(args: &[String]) -> i32 {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 9105));
    let mut token = "appmsg-token".to_owned();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(e) => {
                    eprintln!("xfhub-mocks appmsg: --listen {v}: {e}");
                    return 2;
                }
            },
            ("--token", Some(v)) => token = v.clone(),
            _ => {
                eprintln!("usage: xfhub-mocks appmsg [--listen ADDR] [--token T]");
                return 2;
            }
        }
    }
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return 1;
    };
    rt.block_on(async move {
        match MockAppMsg::start(listen, &token).await {
            Ok(m) => {
                println!("app message service: {}/api/messages", m.url());
                let _ = tokio::signal::ctrl_c().await;
                0
            }
            Err(e) => {
                eprintln!("xfhub-mocks appmsg: {e}");
                1
            }
        }
    })
}
