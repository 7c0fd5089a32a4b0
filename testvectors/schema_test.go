package testvectors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestSchemas validates every vector file against the schema its "schema"
// field names, and checks that every object in every schema is closed. The
// validator knows only the keywords the schemas use and fails on any other.
func TestSchemas(t *testing.T) {
	names, err := fs.Glob(Vectors, "*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			doc := readJSON(t, name).(map[string]any)
			schemaName, _ := doc["schema"].(string)
			if want := strings.TrimSuffix(name, "_test.json") + "_schema.json"; schemaName != want {
				t.Fatalf("schema field %q, want %q", schemaName, want)
			}
			schema := readJSON(t, path.Join("schemas", schemaName)).(map[string]any)
			if schema["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
				t.Errorf("$schema is %v", schema["$schema"])
			}
			if err := closed(schema, "#"); err != nil {
				t.Error(err)
			}
			if err := validate(schema, doc, "$"); err != nil {
				t.Error(err)
			}
		})
	}
}

func readJSON(t *testing.T, name string) any {
	t.Helper()
	b, err := fs.ReadFile(Vectors, name)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// closed reports an object schema without additionalProperties: false.
func closed(s map[string]any, at string) error {
	if s["type"] == "object" && s["additionalProperties"] != false {
		return fmt.Errorf("%s: object schema without additionalProperties false", at)
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for k, p := range props {
			if err := closed(p.(map[string]any), at+"/properties/"+k); err != nil {
				return err
			}
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		return closed(items, at+"/items")
	}
	return nil
}

var schemaKeywords = []string{"$schema", "title", "description", "type", "properties", "required",
	"additionalProperties", "items", "pattern", "enum", "minimum"}

// validate checks v against schema s, a subset of JSON Schema 2020-12.
func validate(s map[string]any, v any, at string) error {
	for k := range s {
		if !slices.Contains(schemaKeywords, k) {
			return fmt.Errorf("%s: unsupported schema keyword %q", at, k)
		}
	}
	switch s["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", at)
		}
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: missing %q", at, r)
			}
		}
		for k, val := range obj {
			p, ok := props[k]
			if !ok {
				return fmt.Errorf("%s: property %q not in the schema", at, k)
			}
			if err := validate(p.(map[string]any), val, at+"."+k); err != nil {
				return err
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: not an array", at)
		}
		items, _ := s["items"].(map[string]any)
		for i, e := range arr {
			if err := validate(items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: not a string", at)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok || strings.ContainsAny(n.String(), ".eE") {
			return fmt.Errorf("%s: not an integer", at)
		}
		if m, ok := s["minimum"].(json.Number); ok {
			if strings.HasPrefix(n.String(), "-") && !strings.HasPrefix(m.String(), "-") {
				return fmt.Errorf("%s: %s below minimum %s", at, n, m)
			}
			if mi, _ := m.Int64(); mi > 0 {
				if ni, err := n.Int64(); err == nil && ni < mi {
					return fmt.Errorf("%s: %s below minimum %s", at, n, m)
				}
			}
		}
	default:
		return fmt.Errorf("%s: unsupported type %v", at, s["type"])
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v not in %v", at, v, enum)
	}
	return nil
}
