//! End-to-end tests against a real kube-apiserver. The cluster is the one named by
//! `SWITCHBOARD_TEST_KUBECONFIG` (`tests/run.sh` starts one from `tests/testbed/`); without it
//! every test prints that it was skipped and why.

mod channels;
mod cluster;
mod controller;
mod crds;
mod defaults;
mod gateway;
mod gateway_configmap;
mod gateway_rbac;
mod harness;
mod large_config;
mod leader;
mod metrics;
mod namespaced;
mod postgres_store;
mod quickstart;
