//! End-to-end tests: the real `convoy` binary against real Docker engines (and, for the fleet
//! tests, real SSH to hosts in network namespaces), with real git repositories. One binary,
//! one module per feature.

mod adopt;
mod apply;
mod bad_input;
mod cli;
mod compose_build;
mod compose_files;
mod compose_keys;
mod compose_prestart;
mod compose_sops;
mod compose_volumes;
mod concurrency;
mod corpus;
mod daemon;
mod dashboard;
mod examples;
mod export;
mod fleet;
mod frozen;
mod git_rev;
mod gitops;
mod gitserver;
mod gitserver_check;
mod harness;
mod history;
mod jobs;
mod logs;
mod mesh;
mod notify;
mod probe;
mod proxy;
mod proxy_backup;
mod proxy_drain;
mod proxy_routes;
mod rollback;
mod rollout;
mod scheduling;
mod secrets;
mod systemd;
mod upgrade;
mod webdriver;
mod windows;
