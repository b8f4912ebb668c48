//! The conformance suite against the origin on the embedded store, one server per case.

mod conformance;
mod support;

macro_rules! embedded_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let server = support::embedded().await;
                conformance::$case(&server.target).await;
                server.stop().await;
            }
        )*
    };
}

for_each_case!(embedded_cases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_input_never_gets_a_5xx() {
    let server = support::embedded().await;
    conformance::random_input_never_gets_a_5xx(&server.target, 600).await;
    server.stop().await;
}
