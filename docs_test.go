package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestReadmeAsksForTheGoVersionGoModNames(t *testing.T) {
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := "Go " + string(m[1]) + " or later"; !strings.Contains(string(readme), want) {
		t.Errorf("README does not say %q, the version go.mod asks for", want)
	}
}

// TestDocsLinksResolve keeps the README and docs/ whole for someone who
// clones the repository: every relative link names a file that exists and,
// when it has one, a heading that file has (GitHub's anchor rule: lower
// case, punctuation dropped, spaces to hyphens).
func TestDocsLinksResolve(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(withoutCodeBlocks(string(text)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s links to %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !hasHeading(t, path, anchor) {
				t.Errorf("%s links to %s: %s has no heading with that anchor", page, target, path)
			}
		}
	}
}

// TestNothingPointsOutsideTheRepository: the contract lives in docs/ and
// openapi.yaml, so no file a user gets with a clone sends them to ../shared.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == ".git" || path == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if path == "docs_test.go" || !textFile(path) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, bad := range []string{"../shared", "SPEC.md", "SPEC §"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s mentions %q, which is not in the repository", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTheReadmeOpensWithTheFirstTenMinutes: what a newcomer needs is on
// the first screen (60 lines): the two set-up commands, the demo, and the
// command that counts the failure kinds.
func TestTheReadmeOpensWithTheFirstTenMinutes(t *testing.T) {
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(text), "\n")
	first := strings.Join(lines[:min(60, len(lines))], "\n")
	for _, want := range []string{"go run .\n", "go test -race ./...", "go run . demo", "go run . load"} {
		if !strings.Contains(first, want) {
			t.Errorf("README's first screen lacks %q", want)
		}
	}
}

func withoutCodeBlocks(s string) string {
	var b strings.Builder
	fence := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "```") {
			fence = !fence
			continue
		}
		if !fence {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func hasHeading(t *testing.T, path, anchor string) bool {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^\p{L}\p{N}\- _]`)
	for _, line := range strings.Split(withoutCodeBlocks(string(text)), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		slug := strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if slug == anchor {
			return true
		}
	}
	return false
}

func textFile(path string) bool {
	switch filepath.Ext(path) {
	case ".go", ".md", ".yml", ".yaml", ".sh", ".cfg", ".html", ".txt":
		return true
	}
	return filepath.Base(path) == "Dockerfile" || strings.HasPrefix(path, ".ci/")
}
