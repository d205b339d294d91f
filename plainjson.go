package main

// plainjson.go writes the JSON strings courier builds by hand, without
// encoding/json's reflection: the 202's id (handlers.go) and messageapp's
// request (sender.go).

// appendPlainJSONString appends s to dst as a JSON string, as encoding/json
// would write it, when s is printable ASCII that needs no escaping (no
// quote, backslash, or the <, > and & that encoding/json escapes for HTML);
// otherwise it reports false and dst is not to be used.
func appendPlainJSONString(dst []byte, s string) ([]byte, bool) {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return dst, false
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), true
}
