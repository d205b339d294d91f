package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rings says which ring each source file is in. The core (what serves the
// API and delivers messages) and observability (metrics, dashboard) must
// not depend on the lab (simulator, load client, demo): courier runs the
// same without it. main.go wires everything, and its service functions are
// checked with the core.
var rings = map[string]string{
	"queue.go": "core", "breaker.go": "core", "sender.go": "core", "store.go": "core",
	"handlers.go": "core", "config.go": "core", "observer.go": "core", "outcome.go": "core", "status.go": "core", "snapshot.go": "core", "plainjson.go": "core", "problem.go": "core", "body.go": "core", "sizing.go": "core", "ids.go": "core", "auth.go": "core", "limiter.go": "core", "spool.go": "core", "connections.go": "core",
	"conn.go": "core", "conn_unix.go": "core", "conn_other.go": "core", "backoff.go": "core",
	"metrics.go": "observability", "dashboard.go": "observability",
	"simulator.go": "lab", "overload.go": "lab", "comparison.go": "lab", "load.go": "lab", "demo.go": "lab", "healthcheck.go": "lab",
	"main.go": "wiring",
}

// coreInMain are main.go's functions that belong to the core: building,
// serving and shutting down courier. Only run may reach the lab.
var coreInMain = []string{"serve", "start", "restore", "newHTTPServer", "shutdown", "drain", "newService"}

func TestCoreDependsOnNothingInTheLab(t *testing.T) {
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	paths, _ := filepath.Glob("*.go")
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		if _, ok := rings[path]; !ok {
			t.Errorf("%s is in no ring: add it to rings", path)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[path] = f
	}
	// Where each top-level name of the lab is declared.
	lab := map[string]string{}
	for path, f := range files {
		if rings[path] != "lab" {
			continue
		}
		for name, obj := range f.Scope.Objects {
			lab[name] = path + ": " + obj.Kind.String() + " " + name
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
				lab[fn.Name.Name] = path + ": func " + fn.Name.Name
			}
		}
	}
	check := func(where string, n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				if decl, ok := lab[id.Name]; ok {
					t.Errorf("%s uses %s (%s): the core must not depend on the lab", where, id.Name, decl)
				}
			}
			return true
		})
	}
	for path, f := range files {
		switch rings[path] {
		case "core", "observability":
			check(path, f)
		case "wiring":
			for _, d := range f.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && slices.Contains(coreInMain, fn.Name.Name) {
					check(path+" "+fn.Name.Name, fn)
				}
			}
		}
	}
}
