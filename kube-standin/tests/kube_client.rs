//! The stand-in, driven by the real kube-rs client and kube-runtime
//! watcher: what the agent will see.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Config};
use serde_json::json;

struct Standin {
    child: Child,
    url: String,
}

impl Standin {
    fn start() -> Standin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kube-standin"))
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kube-standin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .expect("a listening line")
            .to_owned();
        Standin {
            child,
            url: format!("http://{address}"),
        }
    }

    fn client(&self) -> Client {
        let config = Config::new(self.url.parse().expect("a URL"));
        Client::try_from(config).expect("a client")
    }

    fn control(&self, path: &str) {
        let status = Command::new("curl")
            .args(["-sf", "-X", "POST", &format!("{}/standin/{path}", self.url)])
            .stdout(Stdio::null())
            .status()
            .expect("run curl");
        assert!(status.success(), "control {path}");
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(name: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// The next event that is not a bookmark-free no-op, within 10 s.
async fn next<K>(
    stream: &mut (impl Stream<Item = Result<Event<K>, watcher::Error>> + Unpin),
) -> Event<K> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.next().await {
                Some(Ok(event)) => return event,
                Some(Err(_)) => continue, // retried with backoff
                None => panic!("the watch stream ended"),
            }
        }
    })
    .await
    .expect("an event within 20 s")
}

fn name_of<K: kube::Resource>(event: &Event<K>) -> String {
    match event {
        Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) => {
            object.meta().name.clone().unwrap_or_default()
        }
        Event::Init => "<init>".into(),
        Event::InitDone => "<init-done>".into(),
    }
}

#[tokio::test]
async fn crud_through_the_real_client() {
    let standin = Standin::start();
    let services: Api<Service> = Api::namespaced(standin.client(), "default");
    let created = services
        .create(&PostParams::default(), &service("web", "10.96.0.10"))
        .await
        .expect("create");
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    assert!(created.metadata.uid.is_some());
    let duplicate = services
        .create(&PostParams::default(), &service("web", "10.96.0.10"))
        .await
        .expect_err("a second create conflicts");
    assert!(
        duplicate.to_string().contains("AlreadyExists"),
        "{duplicate}"
    );
    services
        .create(&PostParams::default(), &service("db", "10.96.0.11"))
        .await
        .expect("create");
    let listed = services
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.metadata.resource_version.as_deref(), Some("2"));
    let patched = services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"sessionAffinity": "ClientIP"}})),
        )
        .await
        .expect("patch");
    assert_eq!(
        patched.spec.unwrap().session_affinity.as_deref(),
        Some("ClientIP")
    );
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().external_ips = Some(vec!["203.0.113.1".into()]);
    let conflict = services
        .replace("web", &PostParams::default(), &stale)
        .await
        .expect_err("a stale resourceVersion conflicts");
    assert!(conflict.to_string().contains("Conflict"), "{conflict}");
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    let missing = services.get("web").await.expect_err("gone");
    assert!(missing.to_string().contains("NotFound"), "{missing}");
    let all: Api<Service> = Api::all(standin.client());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[tokio::test]
async fn watcher_lists_follows_resumes_and_relists() {
    let standin = Standin::start();
    let client = standin.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &service("a", "10.96.0.1"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(name_of(&next(&mut stream).await));
    }
    assert_eq!(names, vec!["<init>", "a", "<init-done>"]);

    services
        .create(&PostParams::default(), &service("b", "10.96.0.2"))
        .await
        .unwrap();
    assert!(
        matches!(next(&mut stream).await, Event::Apply(s) if s.metadata.name.as_deref() == Some("b"))
    );

    // Cut the watch: the watcher resumes from its version and sees the next change.
    standin.control("drop-watches");
    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let event = next(&mut stream).await;
    assert!(
        matches!(&event, Event::Delete(s) if s.metadata.name.as_deref() == Some("a")),
        "{:?}",
        name_of(&event)
    );

    // Down, changes made meanwhile, history compacted: 410 Gone, relist.
    standin.control("down?seconds=2");
    tokio::time::sleep(Duration::from_millis(200)).await;
    standin.control("compact");
    let mut seen = Vec::new();
    // The change happens while down (made by a separate path: the API
    // answers 503 then). Wait for the stand-in to come back, then change.
    tokio::time::sleep(Duration::from_secs(3)).await;
    services
        .create(&PostParams::default(), &service("c", "10.96.0.3"))
        .await
        .unwrap();
    loop {
        let event = next(&mut stream).await;
        seen.push(name_of(&event));
        if seen.iter().any(|n| n == "c")
            && (seen.contains(&"<init-done>".to_owned()) || matches!(event, Event::Apply(_)))
        {
            break;
        }
    }
    assert!(seen.contains(&"c".to_owned()), "{seen:?}");
}

#[tokio::test]
async fn expired_versions_get_410_and_the_watcher_relists() {
    let standin = Standin::start();
    let client = standin.client();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = |name: &str, address: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [address]}],
        }))
        .unwrap()
    };
    slices
        .create(&PostParams::default(), &slice("web-1", "10.244.0.1"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .boxed();
    for _ in 0..3 {
        next(&mut stream).await;
    }
    // Changes while the watch is cut, then history forgotten: resuming
    // from the old version is 410 Expired, and the watcher lists again.
    standin.control("down?seconds=1");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    slices
        .create(&PostParams::default(), &slice("web-2", "10.244.0.2"))
        .await
        .unwrap();
    standin.control("compact");
    standin.control("drop-watches");
    let mut seen = Vec::new();
    while !seen.contains(&"<init-done>".to_owned()) {
        seen.push(name_of(&next(&mut stream).await));
    }
    assert!(seen.contains(&"<init>".to_owned()), "a relist: {seen:?}");
    assert!(
        seen.contains(&"web-1".to_owned()) && seen.contains(&"web-2".to_owned()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn lists_come_in_pages_with_continue_tokens() {
    let standin = Standin::start();
    let client = standin.client();
    // Namespace `a` sorts before `a-b`, but `a/…` after `a-b/…` as text:
    // the token must follow the store's order, not the text's.
    for (namespace, name) in [
        ("a", "x"),
        ("a", "y"),
        ("a-b", "p"),
        ("a-b", "q"),
        ("b", "z"),
    ] {
        let mut object = service(name, "10.96.0.1");
        object.metadata.namespace = Some(namespace.to_owned());
        Api::<Service>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await
            .expect("create");
    }
    let all: Api<Service> = Api::all(client.clone());
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = ListParams::default().limit(2);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = all.list(&params).await.expect("list a page");
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|s| {
            format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or(""),
                s.metadata.name.as_deref().unwrap_or("")
            )
        }));
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["a/x", "a/y", "a-b/p", "a-b/q", "b/z"]);

    // The watcher pages its initial list the same way and sees every object.
    let mut stream = watcher::watcher(all, watcher::Config::default().page_size(2)).boxed();
    let mut listed = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event within 10 s")
    {
        match event.expect("no error") {
            Event::InitApply(service) => listed.push(service.metadata.name.unwrap_or_default()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(listed, ["x", "y", "p", "q", "z"]);
}

/// POSTs `body` to a control; its status code and body.
fn post(url: &str, control: &str, body: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "-X", "POST", "-w", "\n%{http_code}"])
        .args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("{url}/standin/{control}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test]
async fn fail_answers_its_status_with_a_status_body_then_recovers() {
    let standin = Standin::start();
    let services: Api<Service> = Api::namespaced(standin.client(), "default");
    services
        .create(&PostParams::default(), &service("web", "10.96.0.10"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(
        Api::<Service>::all(standin.client()),
        watcher::Config::default(),
    )
    .boxed();
    for _ in 0..3 {
        next(&mut stream).await;
    }
    standin.control("fail?status=500&seconds=2");
    // The open watch is cut, and every request answers 500 with a Status.
    let cut = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the watch ends or fails within 5 s");
    assert!(!matches!(cut, Some(Ok(Event::Apply(_)))), "{cut:?}");
    let error = services.get("web").await.expect_err("500 while failing");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 500, "{status:?}");
            assert_eq!(status.reason, "InternalError", "{status:?}");
        }
        other => panic!("not an API status: {other}"),
    }
    assert!(standin.client().apiserver_version().await.is_err());
    // Controls still answer; a status that is no error code is refused.
    assert_eq!(post(&standin.url, "fail?status=200", "").0, 400);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        services
            .get("web")
            .await
            .expect("back")
            .metadata
            .name
            .as_deref(),
        Some("web")
    );
}

#[tokio::test]
async fn raw_objects_are_served_as_stored_and_fail_a_typed_list() {
    let standin = Standin::start();
    let client = standin.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &service("good", "10.96.0.10"))
        .await
        .unwrap();
    let bad = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": "abc"}]}});
    let (code, body) = post(&standin.url, "raw", &bad.to_string());
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"resourceVersion\":\"2\""), "{body}");
    // Not an object with a name, or a kind not served: refused.
    assert_eq!(post(&standin.url, "raw", "[1]").0, 400);
    assert_eq!(
        post(
            &standin.url,
            "raw",
            r#"{"kind": "Pod", "metadata": {"name": "p"}}"#
        )
        .0,
        400
    );

    // As stored, in a list (untyped) ...
    let untyped: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<Service>(&()),
    );
    let listed = untyped.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 2);
    assert_eq!(
        listed.items[0].data["spec"]["ports"][0]["port"],
        json!("abc")
    );
    // ... but one bad item fails the typed list as a whole: a typed
    // watcher retries forever and sees no other object.
    let typed = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect_err("the typed list does not decode");
    assert!(typed.to_string().contains("invalid type"), "{typed}");
    let mut stream = watcher::watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .boxed();
    let mut errors = 0;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Err(_))) => errors += 1,
            Ok(Some(Ok(Event::Init))) => {}
            other => panic!("the typed watcher got past the bad item: {other:?}"),
        }
    }
    assert!(errors >= 5, "{errors} errors in 10 events");

    // Replaced as it is: a watch sees it as MODIFIED.
    let mut fixed = bad.clone();
    fixed["spec"]["ports"] = json!("not a list");
    let (code, body) = post(&standin.url, "raw", &fixed.to_string());
    assert_eq!(code, 200, "{body}");
    let got = untyped.get("bad").await;
    assert!(got.is_err(), "a namespaced get needs a namespaced Api");
    let got = Api::<kube::api::DynamicObject>::namespaced_with(
        client,
        "default",
        &kube::api::ApiResource::erase::<Service>(&()),
    )
    .get("bad")
    .await
    .expect("get");
    assert_eq!(got.data["spec"]["ports"], json!("not a list"));
    assert_eq!(got.metadata.resource_version.as_deref(), Some("3"));

    // Deleted by the control, also while down.
    standin.control("down?seconds=5");
    let (code, body) = post(
        &standin.url,
        "delete?kind=Service&namespace=default&name=bad",
        "",
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = post(
        &standin.url,
        "delete?kind=Service&namespace=default&name=bad",
        "",
    );
    assert_eq!(code, 404, "deleted once");
}
