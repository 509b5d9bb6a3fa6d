//! The xfhub hub: the axum gateway, configuration, telemetry and wiring of store, bus and
//! consumers. The binary (`main.rs`) is the CLI over this library; tests drive the router
//! in-process through [`app::Hub`].

pub mod admin_cli;
pub mod alloc;
pub mod api;
pub mod app;
pub mod auth;
pub mod bench;
pub mod client_ip;
pub mod config;
pub mod demo;
pub mod error;
pub mod excel;
pub mod exchange;
pub mod extract;
pub mod keys;
pub mod mobile;
pub mod modules;
pub mod ratelimit;
pub mod soap;
pub mod telemetry;
pub mod tls;
pub mod typed_pii;
pub mod xmlapi;
