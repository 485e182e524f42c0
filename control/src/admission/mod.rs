pub mod pod_security;
