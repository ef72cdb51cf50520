//! tmpl: templates that follow the catalog (consul-template's semantics, Tera syntax). Each
//! distinct dependency is watched once and shared (catalog ones through one whole-catalog
//! delta watch where catalogd offers it: feed.rs); templates re-render only when their data
//! changed, after a quiet period; output is replaced atomically and only when it changed.

pub mod cli;
pub mod command;
pub mod config;
pub mod deps;
pub mod document;
pub mod engine;
pub mod feed;
pub mod output;
pub mod template;
