//! What the vault and the egress policy cost. Run with
//! `cargo bench -p portcullis-server --bench vault` (add the SoftHSM2 environment from
//! `eval "$(bash .ci/softhsm.sh)"` for the PKCS#11 rows).
//!
//! - seal / unseal: one secret version under a tenant key (fresh data key, two AES-256-GCM
//!   operations each way) — what a put and an injection cost once the tenant key is open.
//! - wrap / unwrap a tenant key with the provider's master key: what opening a tenant key
//!   costs (once per tenant key per process; an HSM round trip with PKCS#11).
//! - inject: what credential injection adds to a proxied call — read the sealed secret and its
//!   tenant key in one query (SQLite), unseal it (tenant key cached), build the header.
//! - egress: vetting an upstream URL (parse, scheme, userinfo, IP-literal check) and
//!   checking a two-address lookup answer — the checks added to each outbound connection.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use portcullis_core::id::TenantId;
use portcullis_core::keys::KeyRing;
use portcullis_core::vault::{self, Key256, SecretAt};
use portcullis_server::egress::{EgressPolicy, HostAllowList};
use portcullis_server::vault::KeyProvider;
use std::hint::black_box;
use std::time::Instant;

fn rate(label: &str, iterations: u32, mut work: impl FnMut()) {
    for _ in 0..iterations / 10 {
        work();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        work();
    }
    let elapsed = start.elapsed();
    let per = elapsed / iterations;
    println!(
        "{label:<44} {:>10.0} /s   {:>8.2} µs each",
        f64::from(iterations) / elapsed.as_secs_f64(),
        per.as_secs_f64() * 1e6
    );
}

fn provider_rows(name: &str, provider: &dyn KeyProvider, iterations: u32) {
    let key = Key256::generate();
    let aad = vault::kek_aad(&TenantId::generate(), 1);
    rate(&format!("{name}: wrap a tenant key"), iterations, || {
        black_box(provider.wrap(&aad, &key).unwrap());
    });
    let wrapped = provider.wrap(&aad, &key).unwrap();
    rate(&format!("{name}: unwrap a tenant key"), iterations, || {
        black_box(provider.unwrap(&aad, &wrapped).unwrap());
    });
}

fn main() {
    let tenant = TenantId::generate();
    let kek = Key256::generate();
    let at = SecretAt {
        tenant: &tenant,
        secret_id: "sec_01JBENCH",
        version: 1,
    };
    let value = b"sk_live_0123456789abcdefghijklmnopqrstuvwxyz";
    rate("seal a 43-byte secret", 200_000, || {
        black_box(vault::seal(&kek, &at, value));
    });
    let sealed = vault::seal(&kek, &at, value);
    rate("unseal a 43-byte secret", 200_000, || {
        black_box(vault::unseal(&kek, &at, &sealed, vault::FORMAT_V1).unwrap());
    });

    let keys = KeyRing::generate();
    provider_rows(
        "key file",
        &portcullis_server::vault::KeyFileProvider::new(&keys),
        200_000,
    );
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("PORTCULLIS_TEST_PKCS11_MODULE"),
        var("PORTCULLIS_TEST_PKCS11_TOKEN"),
        var("PORTCULLIS_TEST_PKCS11_PIN"),
    ) {
        (Some(module), Some(token), Some(pin)) => {
            use portcullis_server::vault::pkcs11::{Pkcs11Config, Pkcs11Provider};
            let provider = Pkcs11Provider::open(Pkcs11Config {
                module: module.into(),
                token_label: token,
                pin: pin.into(),
                key_label: "bench-master".into(),
            })
            .expect("open the token");
            provider.ensure_master("bench-master").expect("master key");
            provider_rows("pkcs11 (SoftHSM2)", &provider, 20_000);
        }
        _ => println!("pkcs11: skipped (no PORTCULLIS_TEST_PKCS11_* environment)"),
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = portcullis_store::Store::open(
            &format!("sqlite://{}", dir.path().join("bench.db").display()),
            &Default::default(),
        )
        .await
        .unwrap();
        let tenant = store.create_tenant("bench", "bench", 1).await.unwrap().id;
        let provider = std::sync::Arc::new(portcullis_server::vault::KeyFileProvider::new(&keys));
        let vault = portcullis_server::vault::Vault::new(store, provider, vault::FORMAT_V1);
        vault
            .put(&tenant, "api-key", value, None, "bench", 1)
            .await
            .unwrap();
        let credential = portcullis_server::vault::Credential::Bearer {
            secret: "api-key".into(),
        };
        let iterations = 20_000u32;
        for _ in 0..1000 {
            portcullis_server::vault::inject::inject(&vault, &tenant, &credential, 2)
                .await
                .unwrap();
        }
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(
                portcullis_server::vault::inject::inject(&vault, &tenant, &credential, 2)
                    .await
                    .unwrap(),
            );
        }
        let elapsed = start.elapsed();
        println!(
            "{:<44} {:>10.0} /s   {:>8.2} µs each",
            "inject a bearer credential (SQLite read)",
            f64::from(iterations) / elapsed.as_secs_f64(),
            (elapsed / iterations).as_secs_f64() * 1e6
        );
    });

    let policy = EgressPolicy::new(vec!["127.0.0.1/32".parse().unwrap()], Vec::new());
    let any = HostAllowList::any();
    rate("egress: vet an upstream URL (name)", 1_000_000, || {
        black_box(
            policy
                .check_url("https://api.example.com/v1/mcp", &any)
                .unwrap(),
        );
    });
    rate(
        "egress: vet an upstream URL (IP literal)",
        1_000_000,
        || {
            black_box(policy.check_url("http://127.0.0.1:9000/mcp", &any).unwrap());
        },
    );
    let answer = [
        "93.184.215.14".parse().unwrap(),
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c".parse().unwrap(),
    ];
    rate(
        "egress: check a two-address lookup answer",
        1_000_000,
        || {
            policy
                .check_answer(black_box("api.example.com"), Some(443), black_box(&answer))
                .unwrap();
        },
    );
}
