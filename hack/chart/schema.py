"""Writes charts/kollect/values.schema.json. The schema is kept as this short program because
JSON Schema written by hand repeats itself: every object closes with additionalProperties false,
so a key the chart does not know (or a Go-chart key for a feature this operator does not ship)
fails `helm install` naming the key, instead of being ignored.

Run: python3 hack/chart/schema.py (the chart test checks the file is up to date)."""

import json
import pathlib
import sys


def obj(properties, description=None, required=None):
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if description:
        schema["description"] = description
    if required:
        schema["required"] = required
    return schema


def open_map(description, value=None):
    """A free-form map (labels, annotations, Kubernetes objects passed through)."""
    schema = {"type": "object", "description": description}
    if value:
        schema["additionalProperties"] = value
    return schema


def string(description, **extra):
    return {"type": "string", "description": description, **extra}


def boolean(description):
    return {"type": "boolean", "description": description}


def integer(description, **extra):
    return {"type": "integer", "description": description, **extra}


def strings(description):
    return {"type": "array", "description": description, "items": {"type": "string"}}


def off(feature):
    """A Go-chart switch for a feature this operator does not ship: only false is accepted."""
    return {
        "type": "boolean",
        "const": False,
        "description": f"{feature} is not part of this operator; only false is accepted.",
    }


DURATION = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$"


def duration(description, allow_empty=False):
    pattern = DURATION if not allow_empty else r"^$|" + DURATION
    return {"type": "string", "pattern": pattern, "description": description}


ADDRESS = string("An address such as `:8443` or `0.0.0.0:8443`.", pattern=r"^[^:]*:[0-9]{1,5}$")

policy_rule = obj(
    {
        "apiGroups": strings("API groups (`\"\"` for the core group)."),
        "resources": strings("Resources (plural names)."),
        "verbs": strings("Verbs; collection needs `list` and `watch`."),
        "resourceNames": strings("Names the rule is limited to."),
    },
    "An RBAC policy rule.",
    ["apiGroups", "resources", "verbs"],
)
subject = obj(
    {
        "kind": string("ServiceAccount, User or Group.", enum=["ServiceAccount", "User", "Group"]),
        "name": string("Subject name."),
        "namespace": string("Namespace of a ServiceAccount."),
        "apiGroup": string("`rbac.authorization.k8s.io` for users and groups."),
    },
    "An RBAC subject.",
    ["kind", "name"],
)
resources = open_map("Container resources (`limits`, `requests`).")
controller_props = {
    "maxConcurrentReconciles": obj(
        {
            "target": integer("Targets reconciled at once.", minimum=1, maximum=65535),
            "inventory": integer("Inventories reconciled at once.", minimum=1, maximum=65535),
        },
        "Reconciles at once, per kind.",
    ),
    "collectDispatchWorkers": integer("Workers turning watch events into rows.", minimum=1),
    "collectDispatchQueueSize": integer("Queue capacity per worker.", minimum=1),
}
controller = obj(
    {
        **controller_props,
        "informerResyncPeriod": duration("Full relist period (`0`: never)."),
        "collectMetricsSampleInterval": duration("Domain series refresh (`0`: never)."),
        "reconcileRateLimit": duration("Base retry delay (empty: fixed delays).", allow_empty=True),
        "targetCountResync": duration("Target status refresh (empty: 60s).", allow_empty=True),
        "inventoryStatusRefresh": duration(
            "Longest wait of export progress for the inventory status (empty: 10s).", allow_empty=True
        ),
    },
    "Controller settings.",
)

schema = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Kollect chart values",
    **obj(
        {
            "global": {"type": "object", "description": "Helm's global values (unused)."},
            "nameOverride": string("Chart name override."),
            "fullnameOverride": string("Full name override."),
            "createNamespace": boolean("Render the release namespace."),
            "image": obj(
                {
                    "repository": string("Image repository.", minLength=1),
                    "tag": string("Image tag (empty: appVersion)."),
                    "pullPolicy": string("Pull policy.", enum=["Always", "IfNotPresent", "Never"]),
                },
                "Operator image.",
            ),
            "imagePullSecrets": {
                "type": "array",
                "description": "Image pull secrets.",
                "items": obj({"name": string("Secret name.")}, required=["name"]),
            },
            "replicaCount": integer("Operator replicas.", minimum=0),
            "serviceAccount": obj(
                {
                    "create": boolean("Create the ServiceAccount."),
                    "name": string("ServiceAccount name."),
                    "annotations": open_map("ServiceAccount annotations.", {"type": "string"}),
                },
                "Operator ServiceAccount.",
            ),
            "rbac": obj({"create": boolean("Create RBAC objects.")}, "RBAC."),
            "collect": obj(
                {"rules": {"type": "array", "description": "Read rules for collected kinds.", "items": policy_rule}},
                "What the operator may collect.",
            ),
            "watchNamespaces": strings("Namespaces managed (empty: all)."),
            "defaultIncludedNamespaces": strings("Default included namespaces."),
            "defaultExcludedNamespaces": strings("Namespaces never collected."),
            "tenantMode": boolean("Namespaced kinds and Roles only."),
            "allowPrivateSinks": boolean("Allow sink endpoints in private ranges."),
            "allowCrossNamespaceSecretRefs": boolean("Allow Secret refs across namespaces."),
            "scrubKeys": strings("Extra keys redacted from extracted values."),
            "maxExportBytes": integer("Largest export part in bytes (0: default).", minimum=0),
            "mode": string("Deployment mode; only `single` exists.", enum=["single"]),
            "sinkDefaults": obj({"connectionTest": off("Rendering sample sinks")}, "Go-chart sample sink defaults."),
            "leaderElection": obj(
                {
                    "enabled": boolean("Leader election."),
                    "leaseDuration": duration("Lease duration (empty: 60s).", allow_empty=True),
                    "renewDeadline": duration("Renew deadline (empty: 40s).", allow_empty=True),
                    "retryPeriod": duration("Retry period (empty: 5s).", allow_empty=True),
                },
                "Leader election.",
            ),
            "featureGates": obj(
                {
                    "inventoryHttp": obj(
                        {
                            "enabled": off("The inventory HTTP API"),
                            "port": integer("Unused.", minimum=1, maximum=65535),
                            "authMode": string("Unused.", enum=["kubernetes", "disabled"]),
                        },
                        "The Go operator's inventory HTTP API.",
                    )
                },
                "Go-chart feature gates.",
            ),
            "oauth2Proxy": obj({"enabled": off("The oauth2-proxy sidecar")}, "Go-chart oauth2-proxy."),
            "pprof": obj({"enabled": off("Go's pprof endpoint"), "bindAddress": ADDRESS}, "Go-chart pprof."),
            "controller": controller,
            "resourcesProfile": string("Resource profile.", enum=["default", "largeCluster"]),
            "largeCluster": obj(
                {"resources": resources, "controller": obj(controller_props, "Controller settings.")},
                "Settings with `resourcesProfile: largeCluster`.",
            ),
            "metrics": obj(
                {
                    "enabled": boolean("Serve metrics."),
                    "bindAddress": ADDRESS,
                    "secure": boolean("HTTPS with RBAC-checked bearer tokens."),
                    "readerRole": obj(
                        {
                            "create": boolean("Create the metrics reader role."),
                            "extraSubjects": {"type": "array", "description": "More readers.", "items": subject},
                        },
                        "Who may read /metrics.",
                    ),
                    "serviceMonitor": obj(
                        {
                            "enabled": boolean("Create a ServiceMonitor."),
                            "interval": duration("Scrape interval."),
                            "scrapeTimeout": duration("Scrape timeout."),
                            "labels": open_map("ServiceMonitor labels.", {"type": "string"}),
                        },
                        "Prometheus Operator ServiceMonitor.",
                    ),
                    "prometheusRule": obj(
                        {
                            "enabled": boolean("Create a PrometheusRule."),
                            "labels": open_map("PrometheusRule labels.", {"type": "string"}),
                            "additionalRules": {"type": "array", "description": "More rules.", "items": {"type": "object"}},
                        },
                        "Prometheus Operator alerts.",
                    ),
                },
                "Prometheus metrics.",
            ),
            "webhooks": obj(
                {
                    "enabled": boolean("Validating admission webhooks."),
                    "failurePolicy": string("When the webhook is unreachable.", enum=["Fail", "Ignore"]),
                    "timeoutSeconds": integer("Webhook timeout.", minimum=1, maximum=30),
                    "certManager": obj(
                        {
                            "create": boolean("Use cert-manager for the serving certificate."),
                            "secretName": string("Serving certificate Secret.", minLength=1),
                            "validityDays": integer("Validity of a generated certificate.", minimum=1),
                        },
                        "Webhook serving certificate.",
                    ),
                },
                "Admission webhooks.",
            ),
            "resources": resources,
            "podSecurityContext": open_map("Pod security context."),
            "securityContext": open_map("Container security context."),
            "podAnnotations": open_map("Pod annotations.", {"type": "string"}),
            "podLabels": open_map("Pod labels.", {"type": "string"}),
            "priorityClassName": string("Priority class."),
            "nodeSelector": open_map("Node selector.", {"type": "string"}),
            "tolerations": {"type": "array", "description": "Tolerations.", "items": {"type": "object"}},
            "affinity": open_map("Affinity."),
            "topologySpreadConstraints": {
                "type": "array",
                "description": "Topology spread constraints.",
                "items": {"type": "object", "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"]},
            },
            "podDisruptionBudget": obj(
                {
                    "enabled": boolean("Create a PodDisruptionBudget."),
                    "maxUnavailable": {
                        "type": ["integer", "string"],
                        "description": "Unavailable replicas allowed (number or percentage).",
                    },
                },
                "PodDisruptionBudget.",
            ),
            "networkPolicy": obj(
                {
                    "enabled": boolean("Create a NetworkPolicy."),
                    "apiServerCIDRs": strings("API server CIDRs."),
                    "apiServerPorts": {"type": "array", "description": "API server ports.", "items": {"type": "integer"}},
                    "sinkCIDRs": strings("Sink CIDRs."),
                    "sinkPorts": {"type": "array", "description": "Sink ports.", "items": {"type": "integer"}},
                    "dnsNamespaceSelector": open_map("DNS namespace selector."),
                    "dnsPodSelector": open_map("DNS pod selector."),
                    "metricsFrom": {"type": "array", "description": "Metrics scrapers.", "items": {"type": "object"}},
                },
                "NetworkPolicy.",
            ),
            "logging": obj(
                {
                    "level": string("Log level.", enum=["trace", "debug", "info", "warn", "error"]),
                    "format": string("Log format.", enum=["text", "json"]),
                },
                "Logs.",
            ),
            "extraArgs": strings("Extra `kollect run` arguments."),
        }
    ),
}

root = pathlib.Path(__file__).resolve().parents[2]
target = root / "charts/kollect/values.schema.json"
text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
if "--check" in sys.argv:
    if target.read_text() != text:
        sys.exit(f"{target} is out of date; run python3 hack/chart/schema.py")
else:
    target.write_text(text)
