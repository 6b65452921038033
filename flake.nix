{
  description = "wgplane: encrypts Kubernetes traffic between nodes with WireGuard";

  # nixpkgs has dropped Node 20 (end of life); the shell and the package use Node 24, the current LTS.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      # WireGuard, iproute2 and iptables are Linux tools: Linux only.
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # What the agent runs (adapters/observer.ts, executor.ts, backend.ts, verify.ts): ip, wg,
      # wireguard-go, iptables(-save/-restore) and ip6tables(-save/-restore), sysctl, ping. The same list
      # as deploy/Containerfile's apt-get line (deploy/image.test.ts checks that one).
      runtimeTools = pkgs: with pkgs; [ iproute2 wireguard-tools wireguard-go iptables procps iputils ];
    in
    {
      packages = forAllSystems (pkgs: rec {
        wgplane = pkgs.buildNpmPackage {
          pname = "wgplane";
          version = "0.1.0";
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./package.json
              ./package-lock.json
              ./tsconfig.json
              ./bin
              ./core
              ./planner
              ./adapters
              ./cmd
              ./testing
              ./bench
              ./property-tests
              ./deploy
              ./examples
            ];
          };
          nodejs = pkgs.nodejs_24;

          # The hash of the npm dependencies in package-lock.json. lib.fakeHash makes the first
          # `nix build .#wgplane` fail with "hash mismatch ... got: sha256-..."; put that value here
          # (or compute it with `nix run nixpkgs#prefetch-npm-deps -- package-lock.json`), and again
          # whenever package-lock.json changes.
          npmDepsHash = lib.fakeHash;

          # `npm ci --ignore-scripts` (the default here) keeps `prepare` from running; `npm run build`
          # (tsc 7, the native compiler from package-lock.json, a static binary) then writes dist/. The install step
          # packs what package.json `files` names, drops the dev dependencies, and wraps bin/wgplane.js.
          npmBuildScript = "build";

          # The tools the agent runs, on its PATH (npmInstallHook's wrapper sets only node and the script).
          nativeBuildInputs = [ pkgs.makeWrapper ];
          postInstall = ''
            wrapProgram $out/bin/wgplane --prefix PATH : ${lib.makeBinPath (runtimeTools pkgs)}
          '';

          # The tests need root, network namespaces and WireGuard: run them with `npm test` in the
          # dev shell, not in the sandbox.
          doCheck = false;

          meta = {
            description = "Node agent that encrypts Kubernetes traffic between nodes with WireGuard";
            license = lib.licenses.asl20;
            mainProgram = "wgplane";
            platforms = lib.platforms.linux;
          };
        };
        default = wgplane;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_24      # node and npm
            pkgs.typescript-language-server
            pkgs.tcpdump        # the kernel tests and `wgplane verify` watch the underlay
            pkgs.graphviz       # `wgplane graph` renders SVG with dot
            pkgs.kubectl
          ] ++ runtimeTools pkgs;
          # TypeScript itself (tsc 7), tsx and the test tools come from package-lock.json (`npm ci`), so
          # the shell and CI compile with the same pinned compiler.
          shellHook = ''
            export PATH="$PWD/node_modules/.bin:$PATH"
            [ -d node_modules ] || echo "wgplane: run 'npm ci' to install the pinned TypeScript compiler and dependencies"
          '';
        };
      });
    };
}
