package vectorgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// object is a JSON object that keeps its members in order.
type object []member

type member struct {
	key   string
	value any
}

// MarshalJSON implements json.Marshaler.
func (o object) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

var (
	hexType        = reflect.TypeFor[hexBytes]()
	decimalType    = reflect.TypeFor[decimal]()
	bigDecimalType = reflect.TypeFor[bigDecimal]()
)

// fileSchema returns the JSON Schema (draft 2020-12) of a vector file whose
// groups have type group and whose cases use flags.
func fileSchema(f *file, group reflect.Type, flags []string) object {
	notes := object{}
	for _, fl := range flags {
		notes = append(notes, member{fl, object{{"type", "string"}}})
	}
	return object{
		{"$schema", "https://json-schema.org/draft/2020-12/schema"},
		{"title", f.algorithm + " test vectors (" + f.name + "_test.json)"},
		{"type", "object"},
		{"properties", object{
			{"algorithm", object{{"type", "string"}, {"enum", []string{f.algorithm}}}},
			{"schema", object{{"type", "string"}, {"enum", []string{f.schemaName()}}}},
			{"header", object{{"description", "what the file holds"}, {"type", "array"}, {"items", object{{"type", "string"}}}}},
			{"notes", object{
				{"description", "each flag used in the file, with its meaning and the error it maps to"},
				{"type", "object"},
				{"properties", notes},
				{"required", flags},
				{"additionalProperties", false},
			}},
			{"numberOfTests", object{{"description", "the number of test cases in the file"}, {"type", "integer"}, {"minimum", 1}}},
			{"testGroups", object{{"type", "array"}, {"items", typeSchema(group, flags)}}},
		}},
		{"required", []string{"algorithm", "schema", "header", "notes", "numberOfTests", "testGroups"}},
		{"additionalProperties", false},
	}
}

func typeSchema(t reflect.Type, flags []string) object {
	switch t {
	case hexType:
		return object{{"type", "string"}, {"pattern", "^([0-9a-f]{2})*$"}}
	case decimalType:
		return object{{"type", "string"}, {"pattern", "^(0|[1-9][0-9]{0,19})$"}}
	case bigDecimalType:
		return object{{"type", "string"}, {"pattern", "^(0|[1-9][0-9]*)$"}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeSchema(t.Elem(), flags)
	case reflect.String:
		return object{{"type", "string"}}
	case reflect.Int, reflect.Int64:
		return object{{"type", "integer"}}
	case reflect.Uint8, reflect.Uint64:
		return object{{"type", "integer"}, {"minimum", 0}}
	case reflect.Slice:
		return object{{"type", "array"}, {"items", typeSchema(t.Elem(), flags)}}
	case reflect.Struct:
		return structSchema(t, flags)
	}
	panic(fmt.Sprintf("vectorgen: no schema for %v", t))
}

func structSchema(t reflect.Type, flags []string) object {
	props := object{}
	required := []string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			props = append(props, member{name, fieldSchema(f, flags)})
			if opts != "omitempty" {
				required = append(required, name)
			}
		}
	}
	walk(t)
	return object{{"type", "object"}, {"properties", props}, {"required", required}, {"additionalProperties", false}}
}

func fieldSchema(f reflect.StructField, flags []string) object {
	s := typeSchema(f.Type, flags)
	if n := f.Tag.Get("hex"); n != "" {
		s = object{{"type", "string"}, {"pattern", "^[0-9a-f]{" + fmt.Sprint(2*atoi(n)) + "}$"}}
	}
	if e := f.Tag.Get("enum"); e != "" {
		s = object{{"type", "string"}, {"enum", strings.Split(e, ",")}}
	}
	if f.Tag.Get("schema") == "flags" {
		s = object{{"type", "array"}, {"items", object{{"type", "string"}, {"enum", flags}}}}
	}
	if d := f.Tag.Get("desc"); d != "" {
		s = append(object{{"description", d}}, s...)
	}
	return s
}

func atoi(s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		panic(err)
	}
	return n
}
