// Command go-canonical derives the expected canonical encodings and checksums of the vectors in
// kollect-core/tests/data/canonical-vectors.json with Go's encoding/json, the encoder the Go
// operator uses. kollect-core's parity test compares its own output with the result, which is
// committed as canonical-golden.json; hack/test.sh regenerates it and fails on any difference.
//
// Numbers are decoded the way Kubernetes decodes unstructured objects: integers that fit int64
// stay int64, everything else becomes float64.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

type item struct {
	TargetNamespace string         `json:"targetNamespace"`
	TargetName      string         `json:"targetName"`
	Namespace       string         `json:"namespace"`
	Name            string         `json:"name"`
	Group           string         `json:"group,omitempty"`
	Version         string         `json:"version"`
	Kind            string         `json:"kind"`
	UID             string         `json:"uid"`
	Attributes      map[string]any `json:"attributes"`
}

type envelope struct {
	SchemaVersion string    `json:"schemaVersion"`
	Checksum      string    `json:"checksum"`
	Generation    int64     `json:"generation,omitempty"`
	PartIndex     int       `json:"partIndex,omitempty"`
	PartTotal     int       `json:"partTotal,omitempty"`
	ItemCount     int       `json:"itemCount"`
	ExportedAt    time.Time `json:"exportedAt"`
	Cluster       string    `json:"cluster,omitempty"`
	Items         []item    `json:"items"`
}

type vector struct {
	Name       string            `json:"name"`
	Generation int64             `json:"generation"`
	PartIndex  int               `json:"partIndex"`
	PartTotal  int               `json:"partTotal"`
	Cluster    string            `json:"cluster"`
	ExportedAt string            `json:"exportedAt"`
	Items      []json.RawMessage `json:"items"`
}

type result struct {
	Name     string `json:"name"`
	Items    string `json:"items"`
	Checksum string `json:"checksum"`
	Envelope string `json:"envelope"`
}

// convert turns json.Number into int64 when it is an integer that fits, float64 otherwise.
func convert(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, err := t.Float64()
		if err != nil {
			panic(err)
		}
		return f
	case map[string]any:
		for k, x := range t {
			t[k] = convert(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = convert(x)
		}
		return t
	default:
		return v
	}
}

func decodeItem(raw json.RawMessage) item {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var generic map[string]any
	if err := dec.Decode(&generic); err != nil {
		panic(err)
	}
	convert(generic)
	str := func(k string) string { s, _ := generic[k].(string); return s }
	it := item{
		TargetNamespace: str("targetNamespace"), TargetName: str("targetName"), Namespace: str("namespace"),
		Name: str("name"), Group: str("group"), Version: str("version"), Kind: str("kind"), UID: str("uid"),
	}
	if attrs, ok := generic["attributes"].(map[string]any); ok {
		it.Attributes = attrs
	}
	return it
}

func sortKey(it item) string {
	return strings.Join([]string{it.TargetNamespace, it.TargetName, it.Namespace, it.Name, it.UID, it.Group, it.Version, it.Kind}, "\x00")
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-canonical <canonical-vectors.json>")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var vectors []vector
	if err := json.Unmarshal(data, &vectors); err != nil {
		panic(err)
	}
	results := []result{}
	for _, v := range vectors {
		items := make([]item, 0, len(v.Items))
		for _, raw := range v.Items {
			items = append(items, decodeItem(raw))
		}
		sort.Slice(items, func(i, j int) bool { return sortKey(items[i]) < sortKey(items[j]) })
		itemsJSON, err := json.Marshal(items)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(itemsJSON)
		at, err := time.Parse(time.RFC3339Nano, v.ExportedAt)
		if err != nil {
			panic(err)
		}
		env := envelope{
			SchemaVersion: "kollect.dev/v1alpha1", Checksum: hex.EncodeToString(sum[:]), Generation: v.Generation,
			PartIndex: v.PartIndex, PartTotal: v.PartTotal, ItemCount: len(items), ExportedAt: at.UTC(),
			Cluster: v.Cluster, Items: items,
		}
		envJSON, err := json.Marshal(env)
		if err != nil {
			panic(err)
		}
		results = append(results, result{Name: v.Name, Items: string(itemsJSON), Checksum: env.Checksum, Envelope: string(envJSON)})
	}
	out, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(out, '\n'))
}
