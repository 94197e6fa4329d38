//! `kollect init`: an interactive wizard that asks which kind to collect and where, optionally
//! previews one object, and writes a starting `profile.yaml` and `target.yaml`.
//!
//! The flow is split so that it can be tested without a terminal: [`ClusterFacts`] is what the
//! wizard knows about the cluster (gathered once, up front), a [`Prompter`] asks the questions
//! (a terminal one here, a scripted one in tests), a [`Sampler`] fetches the one object to
//! preview, and [`plan`] / [`write_files`] turn the answers into files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_core::api::keys::ALLOW_SECRET_EXTRACTION_ANNOTATION;
use kollect_core::api::v1alpha1::{
    AttributeSpec, GroupVersionKind, KollectProfile, KollectProfileSpec, KollectTarget, KollectTargetSpec,
};
use serde_json::Value;

use super::collect::Exit;

/// The namespace the generated objects live in.
pub const NAMESPACE: &str = "kollect-system";

/// Where to point users who have no terminal.
const SAMPLES: &str = "examples/first-inventory/";

/// Options of `kollect init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Kubeconfig path (default `$KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Context (default: the current one).
    pub context: Option<String>,
    /// Directory to write `profile.yaml` and `target.yaml` into.
    pub output_dir: PathBuf,
}

/// The user cancelled (Ctrl-C, Esc, end of input, or "no" to a required confirmation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled; nothing was written")]
pub struct Cancelled;

/// Asks the wizard's questions.
pub trait Prompter {
    /// Shows a line of information.
    fn say(&mut self, line: &str);
    /// Asks for a line of text; an empty answer yields `default` when there is one.
    fn input(&mut self, prompt: &str, default: Option<&str>) -> Result<String, Cancelled>;
    /// Asks a yes/no question.
    fn confirm(&mut self, prompt: &str, default: bool) -> Result<bool, Cancelled>;
    /// Asks to pick one of `items`; returns its index.
    fn select(&mut self, prompt: &str, items: &[String]) -> Result<usize, Cancelled>;
}

/// One kind the API server serves (its preferred version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// API group (empty for core).
    pub group: String,
    /// Preferred version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub plural: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl KindInfo {
    fn is_secret(&self) -> bool {
        self.group.is_empty() && self.kind == "Secret"
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn label(&self) -> String {
        let scope = if self.namespaced {
            "namespaced"
        } else {
            "cluster-scoped"
        };
        format!("{} ({}, {}, {scope})", self.kind, self.api_version(), self.plural)
    }

    /// Whether `query` names this kind: the kind or plural (any case), `plural.group`,
    /// `Kind.group`, or `apiVersion/Kind`.
    fn matches(&self, query: &str) -> bool {
        let q = query.trim();
        let lower = q.to_ascii_lowercase();
        let kind = self.kind.to_ascii_lowercase();
        if lower == kind || lower == self.plural {
            return true;
        }
        if !self.group.is_empty() {
            let group = self.group.to_ascii_lowercase();
            if lower == format!("{}.{group}", self.plural) || lower == format!("{kind}.{group}") {
                return true;
            }
        }
        q == format!("{}/{}", self.api_version(), self.kind)
    }
}

/// What the wizard knows about the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterFacts {
    /// Served kinds (preferred versions, list-able ones only).
    pub kinds: Vec<KindInfo>,
    /// Namespace names, sorted.
    pub namespaces: Vec<String>,
}

/// Fetches at most one object of a kind, from the given namespaces (all when empty).
pub trait Sampler {
    /// The first object found, if any.
    fn sample(&mut self, kind: &KindInfo, namespaces: &[String]) -> Result<Option<Value>, String>;
}

/// The answers, ready to be written.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The profile.
    pub profile: KollectProfile,
    /// The target.
    pub target: KollectTarget,
}

/// Runs the questions and returns what to write.
pub fn plan(
    facts: &ClusterFacts,
    prompter: &mut dyn Prompter,
    sampler: &mut dyn Sampler,
) -> Result<Plan, Cancelled> {
    let kind = ask_kind(facts, prompter)?;
    if kind.is_secret() {
        prompter
            .say("Secrets hold credentials. The profile below reads only metadata, and init never prints");
        prompter.say("Secret values, but the profile is annotated to allow Secret extraction.");
        if !prompter.confirm("Collect Secrets?", false)? {
            return Err(Cancelled);
        }
    }
    let name = ask_name(&kind, prompter)?;
    let namespaces = if kind.namespaced {
        ask_namespaces(facts, prompter)?
    } else {
        Vec::new()
    };
    let plan = build_plan(&kind, &name, namespaces);
    if prompter.confirm(
        &format!(
            "Read one {} from the cluster to preview the attributes?",
            kind.kind
        ),
        false,
    )? {
        preview(&kind, &plan, prompter, sampler);
    }
    Ok(plan)
}

fn ask_kind(facts: &ClusterFacts, prompter: &mut dyn Prompter) -> Result<KindInfo, Cancelled> {
    loop {
        let query = prompter.input(
            "Kind to collect (e.g. Deployment, certificates.cert-manager.io, apps/v1/Deployment)",
            Some("Deployment"),
        )?;
        let mut found: Vec<&KindInfo> = facts.kinds.iter().filter(|k| k.matches(&query)).collect();
        found.sort_by_key(|k| (k.group.clone(), k.kind.clone()));
        match found.as_slice() {
            [] => prompter.say(&format!(
                "No kind served by this cluster matches \"{}\"; use the kind, its plural, plural.group or group/version/Kind.",
                query.trim()
            )),
            [one] => return Ok((*one).clone()),
            several => {
                let labels: Vec<String> = several.iter().map(|k| k.label()).collect();
                let index = prompter.select(&format!("\"{}\" matches several kinds", query.trim()), &labels)?;
                if let Some(kind) = several.get(index) {
                    return Ok((*kind).clone());
                }
            }
        }
    }
}

/// A DNS label: what the profile and target names (and the target's `profileRef`) must be.
fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
        ))
    }
}

fn ask_name(kind: &KindInfo, prompter: &mut dyn Prompter) -> Result<String, Cancelled> {
    loop {
        let name = prompter.input("Name of the profile and target", Some(&kind.plural))?;
        let name = name.trim().to_owned();
        match check_name(&name) {
            Ok(()) => return Ok(name),
            Err(message) => prompter.say(&message),
        }
    }
}

/// Expands comma-separated names and glob patterns against the cluster's namespaces. A plain
/// name is kept even when it does not exist yet (it may be created later); a pattern must match.
fn expand_namespaces(answer: &str, existing: &[String]) -> Result<Vec<String>, String> {
    let mut chosen = std::collections::BTreeSet::new();
    for item in answer.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item.contains(['*', '?', '[']) {
            let pattern = glob::Pattern::new(item).map_err(|e| format!("pattern \"{item}\": {e}"))?;
            let matched: Vec<&String> = existing.iter().filter(|ns| pattern.matches(ns)).collect();
            if matched.is_empty() {
                return Err(format!("pattern \"{item}\" matches no namespace of this cluster"));
            }
            chosen.extend(matched.into_iter().cloned());
        } else {
            check_name(item).map_err(|e| format!("namespace {e}"))?;
            chosen.insert(item.to_owned());
        }
    }
    Ok(chosen.into_iter().collect())
}

fn ask_namespaces(facts: &ClusterFacts, prompter: &mut dyn Prompter) -> Result<Vec<String>, Cancelled> {
    loop {
        let answer = prompter.input(
            "Namespaces (comma-separated names or patterns such as team-*; empty for every namespace)",
            Some(""),
        )?;
        match expand_namespaces(&answer, &facts.namespaces) {
            Ok(namespaces) => {
                if answer.contains(['*', '?', '[']) {
                    prompter.say(&format!(
                        "Patterns expand to today's namespaces: {}. Later namespaces are not added.",
                        namespaces.join(", ")
                    ));
                }
                return Ok(namespaces);
            }
            Err(message) => prompter.say(&message),
        }
    }
}

/// The profile and target for the answers: safe default attributes only (metadata).
pub fn build_plan(kind: &KindInfo, name: &str, namespaces: Vec<String>) -> Plan {
    let mut attributes = vec![AttributeSpec::new("name", "$.metadata.name")];
    if kind.namespaced {
        attributes.push(AttributeSpec::new("namespace", "$.metadata.namespace"));
    }
    attributes.push(AttributeSpec::new(
        "creationTimestamp",
        "$.metadata.creationTimestamp",
    ));
    attributes.push(AttributeSpec {
        type_hint: Some("object".to_owned()),
        optional: Some(true),
        ..AttributeSpec::new("labels", "$.metadata.labels")
    });
    let mut profile = KollectProfile::new(
        name,
        KollectProfileSpec {
            target_gvk: GroupVersionKind {
                group: kind.group.clone(),
                version: kind.version.clone(),
                kind: kind.kind.clone(),
            },
            attributes,
            ..Default::default()
        },
    );
    profile.metadata.namespace = Some(NAMESPACE.to_owned());
    if kind.is_secret() {
        profile.metadata.annotations =
            Some([(ALLOW_SECRET_EXTRACTION_ANNOTATION.to_owned(), "true".to_owned())].into());
    }
    let mut spec = KollectTargetSpec {
        profile_ref: name.to_owned(),
        ..Default::default()
    };
    spec.filter.included_namespaces = namespaces;
    let mut target = KollectTarget::new(name, spec);
    target.metadata.namespace = Some(NAMESPACE.to_owned());
    Plan { profile, target }
}

fn preview(kind: &KindInfo, plan: &Plan, prompter: &mut dyn Prompter, sampler: &mut dyn Sampler) {
    let namespaces = &plan.target.spec.filter.included_namespaces;
    let object = match sampler.sample(kind, namespaces) {
        Ok(Some(object)) => object,
        Ok(None) => {
            prompter.say(&format!("No {} found to preview.", kind.kind));
            return;
        }
        Err(message) => {
            prompter.say(&format!("Could not read a {}: {message}", kind.kind));
            return;
        }
    };
    let compiled = CompiledProfile::compile(&plan.profile.spec, &ExtractOptions::default());
    match compiled.extract(&object) {
        // Secret attributes are never shown, even though the defaults only read metadata.
        Ok(attributes) if kind.is_secret() => {
            let names: Vec<&str> = attributes.keys().map(String::as_str).collect();
            prompter.say(&format!(
                "Extracted {} from one Secret (values of Secrets are not shown).",
                names.join(", ")
            ));
        }
        Ok(attributes) => {
            let shown = serde_json::to_string_pretty(&attributes).unwrap_or_default();
            prompter.say(&format!("Attributes of one {}:", kind.kind));
            for line in shown.lines() {
                prompter.say(&format!("  {line}"));
            }
        }
        Err(error) => prompter.say(&format!("The preview failed: {error}")),
    }
}

/// The file contents for a plan, byte-identical for identical answers.
pub fn render(plan: &Plan) -> Result<(String, String), String> {
    let profile = manifest(
        "# Written by `kollect init`: what to extract from each object. Add attributes as needed.\n",
        &plan.profile,
    )?;
    let target = manifest(
        "# Written by `kollect init`: where the profile applies.\n",
        &plan.target,
    )?;
    Ok((profile, target))
}

/// A manifest as YAML after `header`, without its empty status.
fn manifest(header: &str, object: &impl serde::Serialize) -> Result<String, String> {
    let mut value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    let yaml = serde_norway::to_string(&value).map_err(|e| e.to_string())?;
    Ok(format!("{header}{yaml}"))
}

/// Writes `profile.yaml` and `target.yaml`, asking before replacing existing files.
pub fn write_files(plan: &Plan, dir: &Path, prompter: &mut dyn Prompter) -> Result<Vec<PathBuf>, WriteError> {
    let (profile, target) = render(plan).map_err(WriteError::Render)?;
    let files = [
        (dir.join("profile.yaml"), profile),
        (dir.join("target.yaml"), target),
    ];
    let existing: Vec<String> = files
        .iter()
        .filter(|(path, _)| path.exists())
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !existing.is_empty() && !prompter.confirm(&format!("Overwrite {}?", existing.join(" and ")), false)? {
        return Err(WriteError::Cancelled(Cancelled));
    }
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for (path, content) in &files {
        std::fs::write(path, content).map_err(|source| WriteError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// Why the files were not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The user declined to overwrite.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// Serialisation failed.
    #[error("render the manifests: {0}")]
    Render(String),
    /// A file could not be written.
    #[error("write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The prompts on the terminal (standard error), coloured unless `NO_COLOR` is set.
struct TerminalPrompter {
    theme: Box<dyn dialoguer::theme::Theme>,
    term: console::Term,
}

impl TerminalPrompter {
    fn new() -> Self {
        let theme: Box<dyn dialoguer::theme::Theme> = if console::colors_enabled_stderr() {
            Box::new(dialoguer::theme::ColorfulTheme::default())
        } else {
            Box::new(dialoguer::theme::SimpleTheme)
        };
        Self {
            theme,
            term: console::Term::stderr(),
        }
    }
}

/// Every prompt error (Ctrl-C inside a prompt, end of input, a closed terminal) cancels.
fn cancelled<T>(result: dialoguer::Result<T>) -> Result<T, Cancelled> {
    result.map_err(|_| Cancelled)
}

impl Prompter for TerminalPrompter {
    fn say(&mut self, line: &str) {
        // A failing terminal shows up at the next prompt, which cancels.
        let _ = self.term.write_line(line);
    }

    fn input(&mut self, prompt: &str, default: Option<&str>) -> Result<String, Cancelled> {
        let mut input = dialoguer::Input::<String>::with_theme(self.theme.as_ref())
            .with_prompt(prompt)
            .allow_empty(true);
        if let Some(default) = default.filter(|d| !d.is_empty()) {
            input = input.default(default.to_owned());
        }
        cancelled(input.interact_text_on(&self.term))
    }

    fn confirm(&mut self, prompt: &str, default: bool) -> Result<bool, Cancelled> {
        let answer = dialoguer::Confirm::with_theme(self.theme.as_ref())
            .with_prompt(prompt)
            .default(default)
            .wait_for_newline(true)
            .interact_on_opt(&self.term);
        cancelled(answer)?.ok_or(Cancelled)
    }

    fn select(&mut self, prompt: &str, items: &[String]) -> Result<usize, Cancelled> {
        let answer = dialoguer::Select::with_theme(self.theme.as_ref())
            .with_prompt(prompt)
            .items(items)
            .default(0)
            .interact_on_opt(&self.term);
        cancelled(answer)?.ok_or(Cancelled)
    }
}

/// Reads one object through the API server.
struct ClusterSampler {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
}

impl Sampler for ClusterSampler {
    fn sample(&mut self, kind: &KindInfo, namespaces: &[String]) -> Result<Option<Value>, String> {
        let resource = kube::api::ApiResource {
            group: kind.group.clone(),
            version: kind.version.clone(),
            api_version: kind.api_version(),
            kind: kind.kind.clone(),
            plural: kind.plural.clone(),
        };
        let apis: Vec<kube::Api<kube::api::DynamicObject>> = if namespaces.is_empty() {
            vec![kube::Api::all_with(self.client.clone(), &resource)]
        } else {
            namespaces
                .iter()
                .map(|ns| kube::Api::namespaced_with(self.client.clone(), ns, &resource))
                .collect()
        };
        self.runtime.block_on(async {
            for api in apis {
                let list = api
                    .list(&kube::api::ListParams::default().limit(1))
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(object) = list.items.into_iter().next() {
                    let mut value = serde_json::to_value(object).map_err(|e| e.to_string())?;
                    // List items carry no apiVersion/kind; the extraction sees what a watch sees.
                    if let Some(map) = value.as_object_mut() {
                        map.insert("apiVersion".into(), Value::String(kind.api_version()));
                        map.insert("kind".into(), Value::String(kind.kind.clone()));
                    }
                    return Ok(Some(value));
                }
            }
            Ok(None)
        })
    }
}

/// Discovers served kinds and lists namespaces.
async fn gather(client: &kube::Client) -> Result<ClusterFacts, String> {
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| format!("discover the API: {e}"))?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if !capabilities.supports_operation(kube::discovery::verbs::LIST) {
                continue;
            }
            kinds.push(KindInfo {
                group: resource.group,
                version: resource.version,
                kind: resource.kind,
                plural: resource.plural,
                namespaced: capabilities.scope == kube::discovery::Scope::Namespaced,
            });
        }
    }
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .list_metadata(&kube::api::ListParams::default())
        .await
        .map_err(|e| format!("list namespaces: {e}"))?
        .items
        .into_iter()
        .filter_map(|ns| ns.metadata.name)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(ClusterFacts { kinds, namespaces })
}

async fn connect(options: &InitOptions) -> Result<kube::Client, String> {
    let config = match &options.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions {
                    context: options.context.clone(),
                    ..Default::default()
                },
            )
            .await
        }
        None => {
            kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
                context: options.context.clone(),
                ..Default::default()
            })
            .await
        }
    }
    .map_err(|e| format!("kubeconfig: {e}"))?;
    kube::Client::try_from(config).map_err(|e| format!("connect: {e}"))
}

/// Runs the wizard on the terminal. Exit 0 when the files were written, 2 otherwise (no
/// terminal, cluster unreachable, cancelled).
pub async fn run(options: InitOptions) -> Exit {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        eprintln!(
            "error: kollect init asks questions and needs a terminal on stdin and stderr; \
             without one, copy the sample configuration in {SAMPLES} and edit it"
        );
        return Exit::Fatal;
    }
    // Ctrl-C outside a prompt (while talking to the API server) cancels like Ctrl-C inside one.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = console::Term::stderr().show_cursor();
            eprintln!("\n{Cancelled}");
            std::process::exit(Exit::Fatal as i32);
        }
    });
    let client = match connect(&options).await {
        Ok(client) => client,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Fatal;
        }
    };
    let facts = match gather(&client).await {
        Ok(facts) => facts,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Fatal;
        }
    };
    let output_dir = options.output_dir.clone();
    let runtime = tokio::runtime::Handle::current();
    // The prompts block on the terminal: run them off the async workers.
    let outcome = tokio::task::spawn_blocking(move || {
        let mut prompter = TerminalPrompter::new();
        let mut sampler = ClusterSampler { client, runtime };
        let plan = plan(&facts, &mut prompter, &mut sampler)?;
        let written = write_files(&plan, &output_dir, &mut prompter)?;
        prompter.say(&format!(
            "Wrote {}.",
            written
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ));
        prompter.say(&format!(
            "Next: kollect validate --config {dir} && kollect collect --config {dir} --output -",
            dir = output_dir.display()
        ));
        Ok::<_, WriteError>(())
    })
    .await;
    match outcome {
        Ok(Ok(())) => Exit::Ok,
        Ok(Err(error)) => {
            let _ = console::Term::stderr().show_cursor();
            eprintln!(
                "{}{error}",
                if matches!(error, WriteError::Cancelled(_)) {
                    ""
                } else {
                    "error: "
                }
            );
            Exit::Fatal
        }
        Err(join) => {
            eprintln!("error: the wizard stopped: {join}");
            Exit::Fatal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Answers from a script; records everything said and asked.
    #[derive(Default)]
    struct Script {
        answers: VecDeque<&'static str>,
        transcript: Vec<String>,
    }

    impl Script {
        fn new(answers: &[&'static str]) -> Self {
            Self {
                answers: answers.iter().copied().collect(),
                transcript: Vec::new(),
            }
        }

        fn next(&mut self, prompt: &str) -> Result<&'static str, Cancelled> {
            self.transcript.push(format!("? {prompt}"));
            self.answers.pop_front().ok_or(Cancelled)
        }
    }

    impl Prompter for Script {
        fn say(&mut self, line: &str) {
            self.transcript.push(line.to_owned());
        }
        fn input(&mut self, prompt: &str, default: Option<&str>) -> Result<String, Cancelled> {
            let answer = self.next(prompt)?;
            Ok(if answer.is_empty() {
                default.unwrap_or("").to_owned()
            } else {
                answer.to_owned()
            })
        }
        fn confirm(&mut self, prompt: &str, default: bool) -> Result<bool, Cancelled> {
            Ok(match self.next(prompt)? {
                "" => default,
                answer => answer == "y",
            })
        }
        fn select(&mut self, prompt: &str, items: &[String]) -> Result<usize, Cancelled> {
            self.transcript.extend(items.iter().map(|i| format!("  - {i}")));
            self.next(prompt)?.parse().map_err(|_| Cancelled)
        }
    }

    struct OneObject(Option<Value>);

    impl Sampler for OneObject {
        fn sample(&mut self, _: &KindInfo, _: &[String]) -> Result<Option<Value>, String> {
            Ok(self.0.clone())
        }
    }

    fn kind(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> KindInfo {
        KindInfo {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    fn facts() -> ClusterFacts {
        ClusterFacts {
            kinds: vec![
                kind("apps", "v1", "Deployment", "deployments", true),
                kind("", "v1", "Secret", "secrets", true),
                kind("", "v1", "Namespace", "namespaces", false),
                kind("", "v1", "Event", "events", true),
                kind("events.k8s.io", "v1", "Event", "events", true),
            ],
            namespaces: vec!["default".into(), "team-a".into(), "team-b".into(), "web".into()],
        }
    }

    #[test]
    fn defaults_give_a_deployment_profile_for_every_namespace() {
        let mut script = Script::new(&["", "", "", "n"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(None)).expect("plan");
        let (profile, target) = render(&plan).expect("render");
        assert_eq!(
            profile,
            "# Written by `kollect init`: what to extract from each object. Add attributes as needed.\n\
             apiVersion: kollect.dev/v1alpha1\nkind: KollectProfile\nmetadata:\n  name: deployments\n  namespace: kollect-system\n\
             spec:\n  targetGVK:\n    group: apps\n    version: v1\n    kind: Deployment\n  attributes:\n\
             \x20 - name: name\n    path: $.metadata.name\n\
             \x20 - name: namespace\n    path: $.metadata.namespace\n\
             \x20 - name: creationTimestamp\n    path: $.metadata.creationTimestamp\n\
             \x20 - name: labels\n    path: $.metadata.labels\n    type: object\n    optional: true\n"
        );
        assert_eq!(
            target,
            "# Written by `kollect init`: where the profile applies.\n\
             apiVersion: kollect.dev/v1alpha1\nkind: KollectTarget\nmetadata:\n  name: deployments\n  namespace: kollect-system\n\
             spec:\n  profileRef: deployments\n  watchMode: All\n"
        );
        let validation =
            kollect_collect::extract::validate::validate_profile(&plan.profile, &ExtractOptions::default());
        assert!(
            validation.is_valid(),
            "{:?}",
            validation.message("KollectProfile", "deployments")
        );
    }

    #[test]
    fn patterns_expand_to_todays_namespaces_and_plain_names_are_kept() {
        let mut script = Script::new(&["deployments.apps", "web-apps", "team-*, web, later", "n"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(None)).expect("plan");
        assert_eq!(plan.target.spec.profile_ref, "web-apps");
        assert_eq!(
            plan.target.spec.filter.included_namespaces,
            ["later", "team-a", "team-b", "web"]
        );
        assert!(
            script
                .transcript
                .iter()
                .any(|l| l.contains("today's namespaces: later, team-a, team-b, web"))
        );
    }

    #[test]
    fn bad_answers_are_explained_and_asked_again() {
        let mut script = Script::new(&["Gadget", "Deployment", "Bad_Name", "ok", "nomatch-*", "", "n"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(None)).expect("plan");
        assert_eq!(plan.profile.metadata.name.as_deref(), Some("ok"));
        let said = script.transcript.join("\n");
        assert!(
            said.contains("No kind served by this cluster matches \"Gadget\""),
            "{said}"
        );
        assert!(said.contains("\"Bad_Name\" is not a valid name"), "{said}");
        assert!(
            said.contains("pattern \"nomatch-*\" matches no namespace"),
            "{said}"
        );
    }

    #[test]
    fn an_ambiguous_kind_is_chosen_from_a_list() {
        let mut script = Script::new(&["Event", "1", "", "", "n"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(None)).expect("plan");
        assert_eq!(plan.profile.spec.target_gvk.group, "events.k8s.io");
        assert!(
            script
                .transcript
                .contains(&"  - Event (v1, events, namespaced)".to_owned())
        );
    }

    #[test]
    fn cluster_scoped_kinds_get_no_namespace_question_or_attribute() {
        let mut script = Script::new(&["namespaces", "", "n"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(None)).expect("plan");
        let names: Vec<&str> = plan
            .profile
            .spec
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["name", "creationTimestamp", "labels"]);
        assert!(!script.transcript.iter().any(|l| l.starts_with("? Namespaces")));
    }

    #[test]
    fn secrets_need_a_second_confirmation_and_their_values_are_never_shown() {
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "data": {"password": "c2VjcmV0LXZhbHVl"},
        });
        let mut declined = Script::new(&["Secret", "n"]);
        assert!(matches!(
            plan(&facts(), &mut declined, &mut OneObject(Some(secret.clone()))),
            Err(Cancelled)
        ));

        let mut script = Script::new(&["Secret", "y", "", "web", "y"]);
        let plan = plan(&facts(), &mut script, &mut OneObject(Some(secret))).expect("plan");
        let annotations = plan.profile.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations
                .get(ALLOW_SECRET_EXTRACTION_ANNOTATION)
                .map(String::as_str),
            Some("true")
        );
        let said = script.transcript.join("\n");
        assert!(
            said.contains("Extracted name, namespace, creationTimestamp from one Secret"),
            "{said}"
        );
        assert!(
            !said.contains("db\"") && !said.contains("c2VjcmV0") && !said.contains("2026-01-01"),
            "{said}"
        );
    }

    #[test]
    fn the_preview_shows_the_extracted_attributes() {
        let object = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"team": "a"}},
        });
        let mut script = Script::new(&["", "", "", "y"]);
        plan(&facts(), &mut script, &mut OneObject(Some(object))).expect("plan");
        let said = script.transcript.join("\n");
        assert!(said.contains("Attributes of one Deployment:"), "{said}");
        assert!(said.contains("\"team\": \"a\""), "{said}");
    }

    #[test]
    fn existing_files_are_replaced_only_after_confirmation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = build_plan(&facts().kinds[0], "deployments", Vec::new());
        std::fs::write(dir.path().join("target.yaml"), "keep me").expect("write");
        let mut no = Script::new(&["n"]);
        assert!(matches!(
            write_files(&plan, dir.path(), &mut no),
            Err(WriteError::Cancelled(_))
        ));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("target.yaml")).expect("read"),
            "keep me"
        );
        assert!(!dir.path().join("profile.yaml").exists());
        let mut yes = Script::new(&["y"]);
        write_files(&plan, dir.path(), &mut yes).expect("write");
        assert!(
            std::fs::read_to_string(dir.path().join("target.yaml"))
                .expect("read")
                .contains("profileRef: deployments")
        );
    }
}
